"""Both memcached wrappers under every fault mode of docs/faults.md, against real memcached.

Each scenario runs twice through ``make_client``: on ``Memcache`` and on
``AsyncMemcache``. Each fault: every call ends by its deadline (the median within
``BUDGET + SMALL``: the raw driver hangs for minutes under most of them, and a retry
given a fresh budget would take twice as long), the node's breaker opens, and once the
fault is cleared a probe closes it again and calls succeed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import resilience
from resilience.clients.memcache import Memcache
from resilience.core.breaker import BreakerState
from resilience.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ResilienceError,
)
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from .conftest import (
    BUDGET,
    Client,
    MakeClient,
    assert_within_budget,
    open_fds,
    thread_count,
    timed,
)


class Fault:
    """An address plus a switch: ``with fault.active():`` the fault is on. ``proxy`` is
    the FaultProxy in the path, if the fault is a toxic."""

    def __init__(self, address: str, on: Callable[[], Any], off: Callable[[], Any],
                 proxy: FaultProxy | None = None) -> None:
        self.address, self.on, self.off, self.proxy = address, on, off, proxy

    @contextmanager
    def active(self) -> Iterator[None]:
        self.on()
        try:
            yield
        finally:
            self.off()


def proxied(request: pytest.FixtureRequest, toxic: Callable[[], toxics.Toxic]) -> Fault:
    server = request.getfixturevalue("memcached")
    proxy = request.getfixturevalue("fault_proxy")(server.address)
    host, port = proxy.address
    return Fault(f"{host}:{port}", lambda: proxy.add(toxic()), proxy.clear, proxy)


def frozen(request: pytest.FixtureRequest) -> Fault:
    server = request.getfixturevalue("memcached")
    return Fault(server.address, server.freeze, server.thaw)


def _firewall(request: pytest.FixtureRequest, rule: str) -> Fault:
    from resilience.servers.memcached import Memcached

    server, ns = request.getfixturevalue("server_in_netns")(Memcached, start_timeout=10.0)
    fw = ns.firewall
    held: list[Any] = []

    def on() -> None:
        if rule == "reject":
            held.append(fw.reject(server.port))
        elif rule == "drop":
            held.append(fw.drop(server.port))
        else:
            held.append(fw.drop_established(server.port))

    def off() -> None:
        while held:
            held.pop().remove()

    return Fault(f"{server.host}:{server.port}", on, off)


FAULTS: dict[str, Callable[[pytest.FixtureRequest], Fault]] = {
    "reject": lambda r: _firewall(r, "reject"),
    "connect-blackhole": lambda r: _firewall(r, "drop"),
    "established-blackhole": lambda r: _firewall(r, "established"),
    "frozen": frozen,
    "latency-above": lambda r: proxied(r, lambda: toxics.Latency(latency_ms=300)),
    "reset": lambda r: proxied(r, lambda: toxics.Reset(after_bytes=1)),
    "slow-drip": lambda r: proxied(r, lambda: toxics.Slicer(average_size=1, delay_us=15_000)),
    "garbage": lambda r: proxied(r, lambda: toxics.Garbage(ratio=1.0)),
    "blackhole-proxy": lambda r: proxied(r, lambda: toxics.Blackhole()),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recovers(cache: Client, key: str, within: float = 3.0) -> Any:
    """Wait out the open interval (0.2 s) and probe until the node answers (bounded).

    The probe gets a generous budget: the node is healthy again, and a loaded machine
    must not turn a slow first reconnect into a failed probe and a re-opened breaker.
    """
    give_up = time.monotonic() + within
    while True:
        time.sleep(0.3)
        try:
            return cache.get(key, timeout=1.0)
        except ResilienceError:
            if time.monotonic() > give_up:
                raise


@pytest.mark.parametrize("name", list(FAULTS))
def test_every_call_ends_within_its_deadline_and_breaker_opens_then_closes(
        name: str, request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    fault = FAULTS[name](request)
    cache = make_client([fault.address])  # retries on (2 attempts): they share the budget
    breaker = cache.breaker(fault.address)
    cache.set("k", b"x" * 200, timeout=2.0)  # a long value, so a slow drip takes seconds to arrive
    with fault.active():
        outcomes = [timed(lambda: cache.get("k")) for _ in range(8)]
        for _, error in outcomes:
            assert isinstance(error, BackendError | CircuitOpenError), f"{name}: {error!r}"
        assert_within_budget(outcomes, what=name)
        assert breaker.state(time.monotonic()) is BreakerState.OPEN
        if fault.proxy is not None:
            time.sleep(0.05)  # bytes of the failed calls reach the proxy's counters
            before = fault.proxy.counters()
        _, error = timed(lambda: cache.get("k"))
        assert isinstance(error, CircuitOpenError)
        if fault.proxy is not None:
            time.sleep(0.05)
            after = fault.proxy.counters()
            assert (after.accepted, after.upstream_bytes) == (before.accepted,
                                                              before.upstream_bytes)
    assert recovers(cache, "k") == b"x" * 200
    assert breaker.state(time.monotonic()) is BreakerState.CLOSED


def test_slow_drip_is_cut_at_the_deadline_not_per_read(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    # Each byte arrives well inside the 100 ms budget: a per-recv timeout never fires.
    fault = proxied(request, lambda: toxics.Slicer(average_size=1, delay_us=10_000))
    cache = make_client([fault.address], breaker_enabled=False)
    cache.set("k", b"x" * 200, timeout=2.0)
    with fault.active():
        outcomes = [timed(lambda: cache.get("k")) for _ in range(3)]
    assert all(isinstance(error, BackendTimeoutError) for _, error in outcomes)
    assert min(wall for wall, _ in outcomes) > BUDGET * 0.9
    assert_within_budget(outcomes)


def test_latency_below_the_timeout_succeeds(request: pytest.FixtureRequest,
                                           make_client: MakeClient) -> None:
    fault = proxied(request, lambda: toxics.Latency(latency_ms=20))
    cache = make_client([fault.address])
    cache.set("k", b"v", timeout=2.0)
    with fault.active():
        for _ in range(5):
            assert cache.get("k") == b"v"
    assert cache.breaker(fault.address).state(time.monotonic()) is BreakerState.CLOSED


def test_refused_fails_fast_and_recovers_when_a_server_comes_up(
        make_client: MakeClient, tmp_path: Any) -> None:
    from resilience.servers.memcached import Memcached

    port = free_port()
    cache = make_client([f"127.0.0.1:{port}"], retry_attempts=1)
    for _ in range(4):
        elapsed, error = timed(lambda: cache.get("k"))
        assert isinstance(error, BackendUnavailableError) and elapsed < BUDGET
        assert isinstance(error.__cause__, ConnectionRefusedError)
    with pytest.raises(CircuitOpenError):
        cache.get("k")
    server = Memcached(tmp_path / "late", port=port).start()
    try:
        time.sleep(0.3)
        assert cache.get("k") is None  # a miss, from a live server
    finally:
        server.kill()


@pytest.mark.parametrize(("connect_timeout", "timeout", "attempts", "bound"), [
    (0.05, 0.5, 1, 0.05),  # the connect is capped by connect_timeout
    (1.0, BUDGET, 2, BUDGET),  # and by what remains of the budget, retries included
])
def test_connect_blackhole_without_root_is_bounded_by_connect_timeout_and_budget(
        connect_blackhole: tuple[str, int], make_client: MakeClient, connect_timeout: float,
        timeout: float, attempts: int, bound: float) -> None:
    host, port = connect_blackhole
    cache = make_client([f"{host}:{port}"], connect_timeout=connect_timeout, timeout=timeout,
                        retry_attempts=attempts, breaker_enabled=False)
    outcomes = [timed(lambda: cache.get("k")) for _ in range(3)]
    assert all(isinstance(error, BackendTimeoutError) for _, error in outcomes)
    assert_within_budget(outcomes, budget=bound)


def test_fail_open_reads_return_a_miss_and_still_count_as_failures(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    fault = frozen(request)
    cache = make_client([fault.address], fail_open=True)
    cache.set("k", b"v", timeout=2.0)
    seen: list[str] = []
    cache.events.add_listener(lambda e: seen.append(e.kind))
    with fault.active():
        for _ in range(6):
            assert cache.get("k", b"fallback") == b"fallback"
        assert cache.get_many(["k"]) == {}
        with pytest.raises(CircuitOpenError):
            cache.set("k", b"w")  # writes never fail open
    assert "failure" in seen and "fallback_used" in seen and "state_change" in seen


def test_flapping_node_never_blocks_a_call_and_ends_healthy(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    fault = frozen(request)
    cache = make_client([fault.address])
    cache.set("k", b"v", timeout=2.0)
    changes: list[str | None] = []
    cache.events.add_listener(
        lambda e: changes.append(e.new_state) if e.kind == "state_change" else None)
    outcomes = []
    for _ in range(4):  # bounded: 4 cycles of 0.35 s down, 0.35 s up
        for active in (True, False):
            if active:
                fault.on()
            end = time.monotonic() + 0.35
            while time.monotonic() < end:
                outcomes.append(timed(lambda: cache.get("k")))
            if active:
                fault.off()
    assert_within_budget(outcomes)
    time.sleep(0.3)
    assert cache.get("k") == b"v"
    assert "open" in changes and "closed" in changes


@pytest.mark.parametrize("fault_name", ["reset", "frozen"])
def test_no_thread_or_socket_leaks_over_200_faulted_calls(
        fault_name: str, request: pytest.FixtureRequest,
        make_cache: Callable[..., Memcache]) -> None:
    fault = (proxied(request, lambda: toxics.Reset(after_bytes=1)) if fault_name == "reset"
             else frozen(request))
    cache = make_cache([fault.address], timeout=0.01, breaker_enabled=False, retry_attempts=1)
    cache.get("warm", timeout=2.0)  # set-up: generous, the machine may be loaded
    threads, fds = thread_count(), open_fds()
    with fault.active():
        for _ in range(200):
            with pytest.raises(ResilienceError):
                cache.get("k")
    time.sleep(0.1)  # let the proxy close its side of the reset connections
    assert thread_count() <= threads
    assert open_fds() <= fds + 2  # the proxy's listening socket may be re-created


def test_breaker_timing_follows_the_injected_clock(make_client: MakeClient,
                                                    tmp_path: Any) -> None:
    from resilience.servers.memcached import Memcached
    from resilience.testing.clock import FakeClock

    clock = FakeClock()
    port = free_port()
    cache = make_client([f"127.0.0.1:{port}"], retry_attempts=1, clock=clock)
    breaker = cache.breaker(f"127.0.0.1:{port}")
    for _ in range(4):
        with pytest.raises(BackendUnavailableError):
            cache.get("k")
    assert breaker.state(clock.monotonic()) is BreakerState.OPEN
    server = Memcached(tmp_path / "up", port=port).start()
    try:
        with pytest.raises(CircuitOpenError) as info:
            cache.get("k")  # the server is up, but no time has passed on the clock
        assert info.value.retry_after == pytest.approx(0.2)
        clock.advance(0.2)  # no sleeping: the open interval passes on the fake clock
        assert cache.get("k") is None
        assert breaker.state(clock.monotonic()) is BreakerState.CLOSED
    finally:
        server.kill()


def test_transient_failures_retry_idempotent_operations_only(make_client: MakeClient) -> None:
    cache = make_client([f"127.0.0.1:{free_port()}"], breaker_enabled=False, retry_attempts=3)
    retries: list[str] = []
    cache.events.add_listener(lambda e: retries.append(e.operation) if e.kind == "retry" else None)
    calls: list[Callable[[], Any]] = [lambda: cache.incr("n"), lambda: cache.add("k", b"v")]
    if not cache.is_async:  # run(): any pymemcache method, by an operation name
        calls.append(lambda: cache.run("append", "k",
                                       lambda c: c.append("k", b"x", noreply=False)))
    for call in calls:
        with pytest.raises(BackendUnavailableError):
            call()
    assert retries == []  # incr, add and an unknown run() op are never repeated
    with pytest.raises(BackendUnavailableError):
        cache.get("k")
    assert retries.count("get") >= 1


def test_ambient_deadline_shrinks_the_budget(request: pytest.FixtureRequest,
                                             make_client: MakeClient) -> None:
    fault = proxied(request, lambda: toxics.Blackhole())
    cache = make_client([fault.address], timeout=1.0, breaker_enabled=False)
    cache.get("warm", timeout=2.0)
    outcomes = []
    with fault.active():
        for _ in range(3):
            with resilience.deadline(0.05):
                outcomes.append(timed(lambda: cache.get("k")))
    assert all(isinstance(error, BackendTimeoutError) for _, error in outcomes)
    assert min(wall for wall, _ in outcomes) > 0.045
    assert_within_budget(outcomes, budget=0.05)  # the 1 s default gave way to the 50 ms block
