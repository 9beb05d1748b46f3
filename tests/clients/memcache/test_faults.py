"""The memcached wrapper under every fault mode (docs/architecture.md#fault-modes), real memcached.

Each fault: every call ends within its deadline plus a loose margin (the raw driver
hangs for minutes under most of them), the node's breaker opens, and once the fault is
cleared a probe closes it again and calls succeed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

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

from .conftest import open_fds, thread_count

BUDGET = 0.1
MARGIN = 0.25  # loose on purpose: a loaded 2-core machine; the raw driver hangs for minutes


class Fault:
    """An address plus a switch: ``with fault.active():`` the fault is on."""

    def __init__(self, address: str, on: Callable[[], Any], off: Callable[[], Any],
                 warm: bool = True) -> None:
        self.address, self._on, self._off, self.warm = address, on, off, warm

    @contextmanager
    def active(self) -> Iterator[None]:
        self._on()
        try:
            yield
        finally:
            self._off()


def _proxied(request: pytest.FixtureRequest, toxic: Callable[[], toxics.Toxic]) -> Fault:
    server = request.getfixturevalue("memcached")
    proxy = request.getfixturevalue("fault_proxy")(server.address)
    host, port = proxy.address
    return Fault(f"{host}:{port}", lambda: proxy.add(toxic()), proxy.clear)


def _frozen(request: pytest.FixtureRequest) -> Fault:
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

    return Fault(f"{server.host}:{server.port}", on, off, warm=rule == "established")


FAULTS: dict[str, Callable[[pytest.FixtureRequest], Fault]] = {
    "reject": lambda r: _firewall(r, "reject"),
    "connect-blackhole": lambda r: _firewall(r, "drop"),
    "established-blackhole": lambda r: _firewall(r, "established"),
    "frozen": _frozen,
    "latency-above": lambda r: _proxied(r, lambda: toxics.Latency(latency_ms=300)),
    "reset": lambda r: _proxied(r, lambda: toxics.Reset(after_bytes=1)),
    "slow-drip": lambda r: _proxied(r, lambda: toxics.Slicer(average_size=1, delay_us=15_000)),
    "garbage": lambda r: _proxied(r, lambda: toxics.Garbage(ratio=1.0)),
    "blackhole-proxy": lambda r: _proxied(r, lambda: toxics.Blackhole()),
}


def _recovers(cache: Memcache, key: str, within: float = 3.0) -> Any:
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


def _timed(fn: Callable[[], Any]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        fn()
    except ResilienceError as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


@pytest.mark.parametrize("name", list(FAULTS))
def test_every_call_ends_within_its_deadline_and_breaker_opens_then_closes(
        name: str, request: pytest.FixtureRequest, make_cache: Callable[..., Memcache]) -> None:
    fault = FAULTS[name](request)
    cache = make_cache([fault.address])
    breaker = cache.breaker(fault.address)
    cache.set("k", b"x" * 200, timeout=2.0)  # a long value, so a slow drip takes seconds to arrive
    with fault.active():
        outcomes = [_timed(lambda: cache.get("k")) for _ in range(8)]
        for elapsed, error in outcomes:
            assert elapsed < BUDGET + MARGIN, f"{name}: a call took {elapsed:.3f} s"
            assert isinstance(error, BackendError | CircuitOpenError), f"{name}: {error!r}"
        assert breaker.state(time.monotonic()) is BreakerState.OPEN
        elapsed, error = _timed(lambda: cache.get("k"))
        assert isinstance(error, CircuitOpenError) and elapsed < 0.01
    assert _recovers(cache, "k") == b"x" * 200
    assert breaker.state(time.monotonic()) is BreakerState.CLOSED


def test_timeouts_map_to_backend_timeout_with_the_socket_timeout_as_cause(
        request: pytest.FixtureRequest, make_cache: Callable[..., Memcache]) -> None:
    fault = _frozen(request)
    cache = make_cache([fault.address])
    cache.get("warm", timeout=2.0)  # set-up: generous, the machine may be loaded
    with fault.active(), pytest.raises(BackendTimeoutError) as info:
        cache.get("k")
    assert isinstance(info.value.__cause__, TimeoutError)
    assert info.value.endpoint == fault.address and info.value.operation == "get"


def test_slow_drip_is_cut_at_the_deadline_not_per_read(
        request: pytest.FixtureRequest, make_cache: Callable[..., Memcache]) -> None:
    # Each byte arrives well inside the 100 ms budget: a per-recv timeout never fires.
    fault = _proxied(request, lambda: toxics.Slicer(average_size=1, delay_us=10_000))
    cache = make_cache([fault.address], retry_attempts=1)
    cache.set("k", b"x" * 200, timeout=2.0)
    with fault.active():
        elapsed, error = _timed(lambda: cache.get("k"))
    assert isinstance(error, BackendTimeoutError)
    assert BUDGET * 0.9 < elapsed < BUDGET + MARGIN


def test_latency_below_the_timeout_succeeds(request: pytest.FixtureRequest,
                                           make_cache: Callable[..., Memcache]) -> None:
    fault = _proxied(request, lambda: toxics.Latency(latency_ms=20))
    cache = make_cache([fault.address])
    cache.set("k", b"v", timeout=2.0)
    with fault.active():
        for _ in range(5):
            assert cache.get("k") == b"v"
    assert cache.breaker(fault.address).state(time.monotonic()) is BreakerState.CLOSED


def test_refused_fails_fast_and_recovers_when_a_server_comes_up(
        make_cache: Callable[..., Memcache], tmp_path: Any) -> None:
    from resilience.servers.memcached import Memcached

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = make_cache([f"127.0.0.1:{port}"], retry_attempts=1)
    for _ in range(4):
        elapsed, error = _timed(lambda: cache.get("k"))
        assert isinstance(error, BackendUnavailableError) and elapsed < 0.1
        assert isinstance(error.__cause__, ConnectionRefusedError)
    with pytest.raises(CircuitOpenError):
        cache.get("k")
    server = Memcached(tmp_path / "late", port=port).start()
    try:
        time.sleep(0.3)
        assert cache.get("k") is None  # a miss, from a live server
    finally:
        server.kill()


def test_connect_blackhole_without_root_is_bounded_by_the_connect_timeout(
        connect_blackhole: tuple[str, int], make_cache: Callable[..., Memcache]) -> None:
    host, port = connect_blackhole
    cache = make_cache([f"{host}:{port}"], connect_timeout=0.05, timeout=0.5)
    elapsed, error = _timed(lambda: cache.get("k"))
    assert isinstance(error, BackendTimeoutError) and elapsed < 0.05 + MARGIN


def test_fail_open_reads_return_a_miss_and_still_count_as_failures(
        request: pytest.FixtureRequest, make_cache: Callable[..., Memcache]) -> None:
    fault = _frozen(request)
    cache = make_cache([fault.address], fail_open=True)
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
        request: pytest.FixtureRequest, make_cache: Callable[..., Memcache]) -> None:
    fault = _frozen(request)
    cache = make_cache([fault.address])
    cache.set("k", b"v", timeout=2.0)
    changes: list[str | None] = []
    cache.events.add_listener(
        lambda e: changes.append(e.new_state) if e.kind == "state_change" else None)
    for _ in range(4):  # bounded: 4 cycles of 0.35 s down, 0.35 s up
        for active in (True, False):
            if active:
                fault._on()
            end = time.monotonic() + 0.35
            while time.monotonic() < end:
                elapsed, _ = _timed(lambda: cache.get("k"))
                assert elapsed < BUDGET + MARGIN
            if active:
                fault._off()
    time.sleep(0.3)
    assert cache.get("k") == b"v"
    assert "open" in changes and "closed" in changes


@pytest.mark.parametrize("fault_name", ["reset", "frozen"])
def test_no_thread_or_socket_leaks_over_200_faulted_calls(
        fault_name: str, request: pytest.FixtureRequest,
        make_cache: Callable[..., Memcache]) -> None:
    fault = (_proxied(request, lambda: toxics.Reset(after_bytes=1)) if fault_name == "reset"
             else _frozen(request))
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
    node = cache._driver.get()[0]
    assert node.open_count <= node.size


def test_breaker_timing_follows_the_injected_clock(make_cache: Callable[..., Memcache],
                                                    tmp_path: Any) -> None:
    from resilience.servers.memcached import Memcached
    from resilience.testing.clock import FakeClock

    clock = FakeClock()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = make_cache([f"127.0.0.1:{port}"], retry_attempts=1, clock=clock)
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


def test_transient_failures_retry_idempotent_operations_only(
        make_cache: Callable[..., Memcache]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = make_cache([f"127.0.0.1:{port}"], breaker_enabled=False, retry_attempts=3)
    retries: list[str] = []
    cache.events.add_listener(lambda e: retries.append(e.operation) if e.kind == "retry" else None)
    for call in (lambda: cache.incr("n"), lambda: cache.add("k", b"v"),
                 lambda: cache.run("append", "k", lambda c: c.append("k", b"x", noreply=False))):
        with pytest.raises(BackendUnavailableError):
            call()
    assert retries == []  # incr, add and an unknown run() op are never repeated
    with pytest.raises(BackendUnavailableError):
        cache.get("k")
    assert retries.count("get") >= 1


def test_ambient_deadline_shrinks_the_budget_and_a_spent_one_does_no_io(
        request: pytest.FixtureRequest, make_cache: Callable[..., Memcache]) -> None:
    import resilience

    server = request.getfixturevalue("memcached")
    proxy = request.getfixturevalue("fault_proxy")(server.address)
    host, port = proxy.address
    cache = make_cache([f"{host}:{port}"], timeout=1.0)
    with resilience.deadline(0), pytest.raises(resilience.DeadlineExceededError):
        cache.get("k")
    assert proxy.counters().accepted == 0  # rejected before any socket was touched
    cache.get("warm", timeout=2.0)
    with proxy.toxic(toxics.Blackhole()), resilience.deadline(0.03):
        elapsed, error = _timed(lambda: cache.get("k"))
    assert isinstance(error, BackendTimeoutError)
    assert 0.025 < elapsed < 0.03 + MARGIN  # the 1 s default gave way to the 30 ms block
