"""Hedged gets against a real memcached behind the fault proxy (docs/hedging.md).

A memcached key lives on one node, so the hedge is a second request on another
connection to that node. The fault it beats is a stalled connection: a latency toxic
that hits only the connection already open (the proxy's connection draw is scripted:
the first connection it meets is hit, later ones are not). Each scenario runs on
``Memcache`` and ``AsyncMemcache`` (``make_client``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.core.events import Event
from resilience.core.hedge import HedgePolicy
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from .conftest import MakeClient

pytestmark = pytest.mark.timeout(60)

SLOW_MS = 600.0  # the stalled connection; a hedge after 20 ms answers in ~1 ms
HEDGE: dict[str, Any] = {
    "hedge_enabled": True,
    "hedge_delay": 0.02,
    "timeout": 2.0,
    "breaker_slow_call_duration": 5.0,
    "retry_attempts": 1,
}


class FirstOnly(random.Random):
    """The proxy's connection draw, scripted: the first connection a toxic meets is
    hit (0.0 < any probability), every later one missed (1.0)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return 0.0 if self.draws == 1 else 1.0


@pytest.fixture
def proxy(memcached: Any) -> Iterator[FaultProxy]:
    with FaultProxy(memcached.address, rng=FirstOnly()) as p:
        yield p


def _events(client: Any) -> list[Event]:
    seen: list[Event] = []
    client.events.add_listener(seen.append)
    return seen


def _policy(client: Any) -> HedgePolicy:
    policy = client.cache._hedge
    assert isinstance(policy, HedgePolicy)
    return policy


def _settle(client: Any, seconds: float) -> None:
    # Let time pass, running the async client's loop meanwhile (its tasks move only then).
    if client.loop is not None:
        client.loop.run_until_complete(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


def _stall_open_connection(proxy: FaultProxy) -> None:
    # Only the connection open now (the pooled one) gets the latency.
    proxy.add(toxics.Latency(latency_ms=SLOW_MS, probability=0.5))


def test_hedge_wins_from_a_fast_connection_and_the_loser_is_cancelled(
        make_client: MakeClient, proxy: FaultProxy) -> None:
    client = make_client([f"{proxy.host}:{proxy.port}"], **HEDGE)
    assert client.set("k", b"v")  # opens the one pooled connection
    seen = _events(client)
    _stall_open_connection(proxy)
    began = time.monotonic()
    value = client.get("k")
    elapsed = time.monotonic() - began
    assert value == b"v"
    assert elapsed < SLOW_MS / 1000 / 2, f"the hedge should have answered, took {elapsed:.3f} s"
    policy = _policy(client)
    assert (policy.sent, policy.won, policy.refused) == (1, 1, 0)
    assert [e.kind for e in seen] == ["hedge"]  # no failure: the cancelled loser records none
    assert seen[0].attempt_kind == "hedge" and seen[0].endpoint == client.endpoints[0]
    # The loser was cancelled and its connection dropped: once its reply would have
    # come, the pool holds the hedge's connection alone. Had the loser run on, it would
    # have ended well and gone back to the pool too.
    _settle(client, SLOW_MS / 1000 + 0.3)
    pools: Any = client.cache._driver._value
    assert pools[0].idle_count == 1
    assert proxy.counters().accepted == 2
    # The breaker saw the set and the hedge's success; the cancelled loser, nothing.
    snap = client.cache.breaker(client.endpoints[0]).snapshot(time.monotonic())
    assert (snap["state"], snap["calls"], snap["failures"]) == ("closed", 2, 0), snap


def test_without_hedging_the_stalled_connection_is_waited_for(
        make_client: MakeClient, proxy: FaultProxy) -> None:
    # The control: the same fault with hedging off costs the whole stall.
    client = make_client([f"{proxy.host}:{proxy.port}"], **{**HEDGE, "hedge_enabled": False})
    assert client.set("k", b"v")
    _stall_open_connection(proxy)
    began = time.monotonic()
    assert client.get("k") == b"v"
    assert time.monotonic() - began >= SLOW_MS / 1000 * 0.9
    assert client.cache._hedge is None


def test_the_budget_caps_hedges(make_client: MakeClient, memcached: Any,
                                fault_proxy: Callable[..., FaultProxy]) -> None:
    # Every connection slow: every call wants a hedge; 10 % of calls may have one.
    proxy = fault_proxy(memcached.address)
    client = make_client([f"{proxy.host}:{proxy.port}"], **{
        **HEDGE, "hedge_delay": 0.005, "hedge_budget_ratio": 0.1,
        "hedge_budget_min_per_second": 0.0})
    assert client.set("k", b"v")
    seen = _events(client)
    proxy.add(toxics.Latency(latency_ms=30.0))
    calls = 30
    for _ in range(calls):
        assert client.get("k") == b"v"
    policy = _policy(client)
    assert 1 <= policy.sent <= calls * 0.1, policy
    assert policy.sent + policy.refused == calls, policy
    assert sum(e.kind == "hedge" for e in seen) == policy.sent
    # The first attempts won (the hedges started later on equally slow connections):
    # the cancelled hedges are no failures.
    snap = client.cache.breaker(client.endpoints[0]).snapshot(time.monotonic())
    assert snap["failures"] == 0, snap


def test_writes_and_non_idempotent_ops_never_hedge(make_client: MakeClient, memcached: Any,
                                                   fault_proxy: Callable[..., FaultProxy]) -> None:
    proxy = fault_proxy(memcached.address)
    client = make_client([f"{proxy.host}:{proxy.port}"], **{**HEDGE, "hedge_delay": 0.002})
    assert client.set("n", b"1")
    seen = _events(client)
    proxy.add(toxics.Latency(latency_ms=40.0))
    assert client.incr("n", 1) == 2
    assert client.add("fresh", b"x") is True
    assert client.set("k", b"v") is True
    assert client.delete("fresh") is True
    assert client.gets("k")[0] == b"v"  # only get is hedged
    assert _policy(client).sent == 0 and not any(e.kind == "hedge" for e in seen)
    assert client.get("k") == b"v"
    assert _policy(client).sent == 1


def test_quantile_delay_needs_samples_then_hedges_slow_calls(
        make_client: MakeClient, proxy: FaultProxy) -> None:
    # No fixed delay: no hedge until 20 calls are seen, then after their p95.
    client = make_client([f"{proxy.host}:{proxy.port}"],
                         **{**HEDGE, "hedge_delay": 0.0, "hedge_min_delay": 0.005})
    assert client.set("k", b"v")
    policy = _policy(client)
    assert policy.delay() is None
    for _ in range(25):
        assert client.get("k") == b"v"
    delay = policy.delay()
    assert delay is not None and 0.005 <= delay < SLOW_MS / 1000 / 4
    assert policy.sent == 0  # healthy calls were not hedged
    _stall_open_connection(proxy)
    began = time.monotonic()
    assert client.get("k") == b"v"
    assert time.monotonic() - began < SLOW_MS / 1000 / 2
    assert policy.won == 1


def test_prometheus_counts_a_hedge_as_an_attempt_of_kind_hedge(
        make_client: MakeClient, proxy: FaultProxy) -> None:
    from prometheus_client import CollectorRegistry

    from resilience.core.metrics import PrometheusListener

    client = make_client([f"{proxy.host}:{proxy.port}"], **HEDGE)
    registry = CollectorRegistry()
    PrometheusListener(registry).instrument(client.cache)
    assert client.set("k", b"v")
    _stall_open_connection(proxy)
    assert client.get("k") == b"v"
    labels = {"service": "memcache", "endpoint": client.endpoints[0]}
    assert registry.get_sample_value("resilience_attempts_total",
                                     {**labels, "kind": "hedge"}) == 1
    assert registry.get_sample_value("resilience_attempts_total",
                                     {**labels, "kind": "first"}) == 1  # the set
    assert registry.get_sample_value(
        "resilience_call_duration_seconds_count",
        {"service": "memcache", "operation": "get", "outcome": "success", "error_type": ""},
    ) == 1
