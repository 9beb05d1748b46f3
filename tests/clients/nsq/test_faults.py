"""Both publishers under every fault mode of docs/faults.md, against a real nsqd.

Each fault: every publish ends by its deadline (the median within ``BUDGET + SMALL``),
says whether the message may have been queued (``.ambiguous``), the nsqd's breaker
opens and then rejects without I/O, and once the fault is cleared publishes succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from resilience.clients.nsq._proto import ConnectFailed
from resilience.core.breaker import BreakerState
from resilience.errors import BackendError, BackendTimeoutError, CircuitOpenError, ResilienceError
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from .conftest import BUDGET, MakePub, Pub, assert_within_budget, new_topic, timed


class Fault:
    """An address plus a switch; ``proxy`` is the FaultProxy in the path, if any."""

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
    nsq = request.getfixturevalue("nsq")
    proxy = request.getfixturevalue("fault_proxy")(nsq.nsqds[0].tcp_address)
    return Fault(f"{proxy.host}:{proxy.port}", lambda: proxy.add(toxic()), proxy.clear, proxy)


def frozen(request: pytest.FixtureRequest) -> Fault:
    nsqd = request.getfixturevalue("nsq").nsqds[0]
    return Fault(nsqd.tcp_address, nsqd.freeze, nsqd.thaw)


def firewalled(request: pytest.FixtureRequest, rule: str) -> Fault:
    from resilience.servers.nsq import Nsqd

    server, ns = request.getfixturevalue("server_in_netns")(Nsqd, start_timeout=15.0)
    port = server.ports["tcp"]
    held: list[Any] = []

    def on() -> None:
        fw = ns.firewall
        held.append({"reject": fw.reject, "drop": fw.drop,
                     "established": fw.drop_established}[rule](port))

    def off() -> None:
        while held:
            held.pop().remove()

    return Fault(server.tcp_address, on, off)


FAULTS: dict[str, Callable[[pytest.FixtureRequest], Fault]] = {
    "reject": lambda r: firewalled(r, "reject"),
    "connect-blackhole": lambda r: firewalled(r, "drop"),
    "established-blackhole": lambda r: firewalled(r, "established"),
    "frozen": frozen,
    "latency-above": lambda r: proxied(r, lambda: toxics.Latency(latency_ms=400)),
    "reset": lambda r: proxied(r, lambda: toxics.Reset(after_bytes=1)),
    "slow-drip": lambda r: proxied(r, lambda: toxics.Slicer(average_size=1, delay_us=60_000)),
    "garbage": lambda r: proxied(r, lambda: toxics.Garbage(ratio=1.0)),
    "blackhole-proxy": lambda r: proxied(r, lambda: toxics.Blackhole()),
}
# Faults where every publish was written before it failed: nsqd may have queued it.
AMBIGUOUS = {"frozen", "latency-above", "slow-drip", "garbage", "blackhole-proxy"}


def recovers(pub: Pub, topic: str, within: float = 3.0) -> None:
    give_up = time.monotonic() + within
    while True:
        time.sleep(0.3)
        try:
            pub.publish(topic, b"again", timeout=1.0)
            return
        except ResilienceError:
            if time.monotonic() > give_up:
                raise


@pytest.mark.parametrize("name", list(FAULTS))
def test_every_publish_ends_within_its_deadline_and_the_breaker_opens_then_closes(
        name: str, request: pytest.FixtureRequest, make_publisher: MakePub) -> None:
    fault = FAULTS[name](request)
    # No background health probe: it would connect while the rejection below is
    # checked for doing no I/O (probes: test_health_probe.py).
    pub = make_publisher([fault.address], breaker_health_probe=False)
    topic = new_topic()
    pub.publish(topic, b"warm", timeout=2.0)  # a pooled connection exists
    with fault.active():
        outcomes = [timed(lambda: pub.publish(topic, b"x")) for _ in range(5)]
        errors = [e for _, e in outcomes]
        assert all(isinstance(e, BackendError | CircuitOpenError) for e in errors), errors
        assert_within_budget(outcomes, what=name)
        failed = [e for e in errors if isinstance(e, BackendError)]
        # Ambiguous exactly when the request may have been written: not after a
        # failed connect (a firewall's later calls), always when nsqd accepts.
        for e in failed:
            assert e.ambiguous is not isinstance(e.__cause__, ConnectFailed), (name, e)
        if name in AMBIGUOUS:
            assert all(e.ambiguous for e in failed), (name, failed)
        assert pub.breaker(fault.address).state(time.monotonic()) is BreakerState.OPEN
        if fault.proxy is not None:
            time.sleep(0.05)
            before = fault.proxy.counters()
        _, error = timed(lambda: pub.publish(topic, b"x"))
        assert isinstance(error, CircuitOpenError)
        if fault.proxy is not None:
            time.sleep(0.05)
            after = fault.proxy.counters()
            assert (after.accepted, after.upstream_bytes) == (before.accepted,
                                                              before.upstream_bytes)
    recovers(pub, topic)
    assert pub.breaker(fault.address).state(time.monotonic()) is BreakerState.CLOSED


def test_slow_drip_is_cut_at_the_deadline_not_per_read(
        request: pytest.FixtureRequest, make_publisher: MakePub) -> None:
    # Each byte of the 10-byte OK frame arrives well inside the budget: only a deadline
    # over the whole reply, not a per-recv timeout, ends the call in time.
    fault = proxied(request, lambda: toxics.Slicer(average_size=1, delay_us=40_000))
    pub = make_publisher([fault.address], breaker_enabled=False)
    topic = new_topic()
    pub.publish(topic, b"warm", timeout=2.0)
    with fault.active():
        outcomes = [timed(lambda: pub.publish(topic, b"x")) for _ in range(3)]
    assert all(isinstance(e, BackendTimeoutError) for _, e in outcomes), outcomes
    assert min(w for w, _ in outcomes) > BUDGET * 0.9
    assert_within_budget(outcomes)


def test_latency_below_the_budget_succeeds(request: pytest.FixtureRequest,
                                          make_publisher: MakePub) -> None:
    fault = proxied(request, lambda: toxics.Latency(latency_ms=30))
    pub = make_publisher([fault.address])
    topic = new_topic()
    with fault.active():
        for _ in range(4):
            pub.publish(topic, b"x")
    assert pub.breaker(fault.address).state(time.monotonic()) is BreakerState.CLOSED


def test_connect_blackhole_without_root_is_bounded_by_connect_timeout(
        connect_blackhole: tuple[str, int], make_publisher: MakePub) -> None:
    host, port = connect_blackhole
    pub = make_publisher([f"{host}:{port}"], connect_timeout=0.05, breaker_enabled=False)
    outcomes = [timed(lambda: pub.publish("t", b"x")) for _ in range(3)]
    assert all(isinstance(e, BackendTimeoutError) and not e.ambiguous for _, e in outcomes)
    assert_within_budget(outcomes, budget=0.05)


@pytest.mark.parametrize("toxic", [
    lambda: toxics.Slicer(average_size=1, delay_us=40_000),  # urllib's per-read timeout: 1 s+
    lambda: toxics.Blackhole(),
])
def test_http_publish_is_bounded_by_the_whole_request_deadline(
        nsq: Any, fault_proxy: Any, make_publisher: MakePub, toxic: Any) -> None:
    proxy = fault_proxy(nsq.nsqds[0].http_address)
    address = f"{proxy.host}:{proxy.port}"
    pub = make_publisher([address], transport="http", breaker_enabled=False)
    topic = new_topic()
    pub.publish(topic, b"warm", timeout=2.0)
    with proxy.toxic(toxic()):
        outcomes = [timed(lambda: pub.publish(topic, b"x")) for _ in range(3)]
    assert all(isinstance(e, BackendTimeoutError) and e.ambiguous for _, e in outcomes)
    assert_within_budget(outcomes)
