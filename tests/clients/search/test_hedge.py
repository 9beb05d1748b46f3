"""Hedged get and search against a real server: one of two nodes made slow (docs/hedging.md).

The two "nodes" are two fault proxies in front of the session's one server, so the
latency toxic makes one path slow while the other stays fast, as a slow node next to a
healthy one. Sync and async (``make_client``), both drivers (``driver``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from resilience.core.events import Event
from resilience.core.hedge import HedgePolicy
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from .conftest import INDEX, MakeClient, body_kw

pytestmark = pytest.mark.timeout(300)

SLOW_MS = 800.0
HEDGE: dict[str, Any] = {
    "hedge_enabled": True,
    "hedge_delay": 0.05,
    "timeout": 3.0,
    "retry_attempts": 1,
}


@pytest.fixture
def two_paths(node: Any) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    with FaultProxy(f"{node.host}:{node.port}", seed=1) as slow, \
            FaultProxy(f"{node.host}:{node.port}", seed=2) as fast:
        yield slow, fast


def _policy(client: Any) -> HedgePolicy:
    policy = client.wrapped._hedge
    assert isinstance(policy, HedgePolicy)
    return policy


def test_reads_hedged_to_the_fast_node_win_and_the_slow_one_records_nothing(
        make_client: MakeClient, driver: str, two_paths: tuple[FaultProxy, FaultProxy]) -> None:
    slow, fast = two_paths
    client = make_client([f"http://{slow.host}:{slow.port}", f"http://{fast.host}:{fast.port}"],
                         **HEDGE)
    seen: list[Event] = []
    client.wrapped.events.add_listener(seen.append)
    client.get(index=INDEX, id="1")  # connect both paths outside the fault
    client.get(index=INDEX, id="1")
    # A loaded machine may make a warm-up call hedge (and win): count from here.
    won_before, sent_before = _policy(client).won, _policy(client).sent
    slow.add(toxics.Latency(latency_ms=SLOW_MS))
    durations = []
    for n in range(4):  # round robin: two of them start on the slow node
        began = time.monotonic()
        if n % 2:
            query: dict[str, Any] = {"query": {"match_all": {}}}
            reply = client.search(index=INDEX, **(query if driver == "elasticsearch"
                                                  else {"body": query}))
            assert reply["hits"]["total"]["value"] >= 1
        else:
            assert client.get(index=INDEX, id="1")["_id"] == "1"
        durations.append(time.monotonic() - began)
    assert max(durations) < SLOW_MS / 1000 / 2, durations
    policy = _policy(client)
    # The two calls that started on the slow node were won by their hedge (a call that
    # started on the fast node may hedge too on a loaded machine, and may even win).
    assert policy.won - won_before >= 2 and policy.sent - sent_before >= 2, policy
    hedges = [e for e in seen if e.kind == "hedge"]
    assert sum(e.endpoint == f"{fast.host}:{fast.port}" for e in hedges) >= 2, hedges
    assert not any(e.kind == "failure" for e in seen)
    snap = client.wrapped.breaker(f"{slow.host}:{slow.port}").snapshot(time.monotonic())
    assert snap["failures"] == 0 and snap["state"] == "closed", snap


def test_writes_are_never_hedged(make_client: MakeClient, driver: str,
                                 two_paths: tuple[FaultProxy, FaultProxy]) -> None:
    slow, fast = two_paths
    client = make_client([f"http://{slow.host}:{slow.port}", f"http://{fast.host}:{fast.port}"],
                         **{**HEDGE, "hedge_delay": 0.01})
    slow.add(toxics.Latency(latency_ms=100.0))
    fast.add(toxics.Latency(latency_ms=100.0))
    # Writes go to an index of their own: other tests count the documents of INDEX.
    client.index(index="hedge-writes", id="hedge-w", **body_kw(driver, {"n": 2}))  # idempotent
    client.index(index="hedge-writes", **body_kw(driver, {"n": 3}))  # auto id: never repeated
    client.count(index=INDEX)  # a read that is not hedged
    assert _policy(client).sent == 0
    client.get(index=INDEX, id="1")
    assert _policy(client).sent == 1
