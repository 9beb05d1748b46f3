"""Both search wrappers under every fault mode of docs/architecture.md#fault-modes.

Each fault runs on Elasticsearch and OpenSearch (sync; the async twins run a subset in
test_async.py): every call ends by its deadline (the median within ``BUDGET + SMALL``;
the raw drivers take 10 s per failed call, or hang on a reply that trickles in), the
node's breaker opens, a call then is rejected without I/O, and once the fault is gone
a probe closes the breaker again.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

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

from ..memcache.conftest import assert_within_budget, timed
from .conftest import BUDGET, DOC, INDEX, MakeClient


class Fault:
    """A node URL plus a switch: ``with fault.active():`` the fault is on."""

    def __init__(self, url: str, on: Callable[[], Any], off: Callable[[], Any],
                 proxy: FaultProxy | None = None) -> None:
        self.url, self.on, self.off, self.proxy = url, on, off, proxy

    @property
    def endpoint(self) -> str:
        return self.url.split("://")[1]

    @contextmanager
    def active(self) -> Iterator[None]:
        self.on()
        try:
            yield
        finally:
            self.off()


def proxied(request: pytest.FixtureRequest, toxic: Callable[[], toxics.Toxic]) -> Fault:
    server = request.getfixturevalue("node")
    proxy = request.getfixturevalue("fault_proxy")((server.host, server.port))
    host, port = proxy.address
    return Fault(f"http://{host}:{port}", lambda: proxy.add(toxic()), proxy.clear, proxy)


def frozen(request: pytest.FixtureRequest) -> Fault:
    server = request.getfixturevalue("node")
    return Fault(server.url, server.freeze, server.thaw)


def firewalled(request: pytest.FixtureRequest, rule: str) -> Fault:
    server = request.getfixturevalue("netns_node")
    fw = server.namespace.firewall
    held: list[Any] = []

    def on() -> None:
        held.append({"reject": fw.reject, "drop": fw.drop,
                     "established": fw.drop_established}[rule](server.port))

    def off() -> None:
        while held:
            held.pop().remove()

    return Fault(server.url, on, off)


FAULTS: dict[str, Callable[[pytest.FixtureRequest], Fault]] = {
    "reject": lambda r: firewalled(r, "reject"),
    "connect-blackhole": lambda r: firewalled(r, "drop"),
    "established-blackhole": lambda r: firewalled(r, "established"),
    "frozen": frozen,
    "latency-above": lambda r: proxied(r, lambda: toxics.Latency(latency_ms=300)),
    "reset": lambda r: proxied(r, lambda: toxics.Reset(after_bytes=1)),
    "slow-drip": lambda r: proxied(r, lambda: toxics.Slicer(average_size=1, delay_us=15_000)),
    "garbage": lambda r: proxied(r, lambda: toxics.Garbage(ratio=1.0)),
    "blackhole-proxy": lambda r: proxied(r, lambda: toxics.Blackhole()),
}


def recovers(client: Any, within: float = 5.0) -> Any:
    """Wait out the open interval and probe (generous budget) until the node answers."""
    give_up = time.monotonic() + within
    while True:
        time.sleep(0.3)
        try:
            return client.get(index=INDEX, id="1", timeout=2.0)
        except ResilienceError:
            if time.monotonic() > give_up:
                raise


@pytest.mark.parametrize("name", list(FAULTS))
def test_every_call_ends_within_its_deadline_and_breaker_opens_then_closes(
        name: str, request: pytest.FixtureRequest, make_sync: MakeClient) -> None:
    fault = FAULTS[name](request)
    # Retries on (2 attempts): they share the budget. No background health probe: it
    # would connect while the rejection below is checked for doing no I/O (probes:
    # test_health_probe.py).
    client = make_sync([fault.url], breaker_health_probe=False)
    breaker = client.breaker(fault.endpoint)
    assert client.get(index=INDEX, id="1", timeout=5.0)["_source"] == DOC  # warm connection
    with fault.active():
        outcomes = [timed(lambda: client.get(index=INDEX, id="1")) for _ in range(8)]
        for _, error in outcomes:
            assert isinstance(error, BackendError | CircuitOpenError), f"{name}: {error!r}"
        assert_within_budget(outcomes, what=name)
        assert breaker.state(time.monotonic()) is BreakerState.OPEN
        if fault.proxy is not None:
            time.sleep(0.05)
            before = fault.proxy.counters()
        elapsed, error = timed(lambda: client.get(index=INDEX, id="1"))
        assert isinstance(error, CircuitOpenError) and elapsed < 0.01
        if fault.proxy is not None:
            time.sleep(0.05)
            after = fault.proxy.counters()
            assert (after.accepted, after.upstream_bytes) == (before.accepted,
                                                              before.upstream_bytes)
    assert recovers(client)["_source"] == DOC
    assert breaker.state(time.monotonic()) is BreakerState.CLOSED


def test_slow_drip_is_cut_at_the_deadline_not_per_read(
        request: pytest.FixtureRequest, make_sync: MakeClient) -> None:
    """Each byte arrives well inside the budget, so urllib3's per-read timeout never
    fires (the raw driver with request_timeout=0.1 takes seconds); the wrapper ends the
    call at the deadline."""
    fault = proxied(request, lambda: toxics.Slicer(average_size=1, delay_us=10_000))
    client = make_sync([fault.url], breaker_enabled=False)
    client.get(index=INDEX, id="1", timeout=5.0)
    with fault.active():
        outcomes = [timed(lambda: client.get(index=INDEX, id="1")) for _ in range(3)]
    assert all(isinstance(error, BackendTimeoutError) for _, error in outcomes), outcomes
    assert min(wall for wall, _ in outcomes) > BUDGET * 0.9
    assert_within_budget(outcomes)


def test_latency_below_the_budget_succeeds(request: pytest.FixtureRequest,
                                           make_sync: MakeClient) -> None:
    fault = proxied(request, lambda: toxics.Latency(latency_ms=20))
    client = make_sync([fault.url], timeout=0.5)
    client.get(index=INDEX, id="1", timeout=5.0)
    with fault.active():
        for _ in range(4):
            assert client.get(index=INDEX, id="1")["found"] is True
    assert client.breaker(fault.endpoint).state(time.monotonic()) is BreakerState.CLOSED


def test_refused_fails_fast_with_the_cause(make_sync: MakeClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_sync([f"http://127.0.0.1:{port}"], retry_attempts=1)
    for _ in range(4):
        elapsed, error = timed(lambda: client.search(index=INDEX))
        assert isinstance(error, BackendUnavailableError) and elapsed < BUDGET, error
        assert error.__cause__ is not None and "onnection" in type(error.__cause__).__name__
    with pytest.raises(CircuitOpenError):
        client.search(index=INDEX)
