"""Multi-key calls over three nodes ask the nodes concurrently, within one budget.

Concurrent: each node gets the whole deadline, so three hung nodes cost one budget and
three slow-but-healthy nodes answer in one node's latency, sync and async alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from resilience.errors import BackendTimeoutError, ResilienceError
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from .conftest import BUDGET, Client, MakeClient, timed

KEYS = [f"key:{i}" for i in range(30)]
def spread(cache: Client) -> None:
    """KEYS land on every node (else the test proves nothing) and are stored."""
    assert len({cache.node_for(k) for k in KEYS}) == 3
    assert cache.set_many({k: b"v" for k in KEYS}, timeout=2.0) == []


def test_three_frozen_nodes_cost_one_budget_not_three(
        memcached_cluster: Any, make_client: MakeClient, request: pytest.FixtureRequest) -> None:
    cache = make_client(memcached_cluster.addresses, breaker_enabled=False)
    spread(cache)
    for member in memcached_cluster.members:
        member.freeze()
    try:
        wall, error = timed(lambda: cache.get_many(KEYS))
    finally:
        for member in memcached_cluster.members:
            member.thaw()
    assert isinstance(error, BackendTimeoutError)
    assert set(error.failed_keys) == set(KEYS)
    assert error.partial == {}
    assert wall < 2 * BUDGET  # one after another would take 3 budgets
    assert error.elapsed is not None and error.elapsed > 0.9 * BUDGET  # the whole budget each


def test_three_slow_nodes_answer_in_one_nodes_latency(
        memcached_cluster: Any, fault_proxy: Callable[..., FaultProxy],
        make_client: MakeClient, request: pytest.FixtureRequest) -> None:
    proxies = [fault_proxy(address) for address in memcached_cluster.addresses]
    cache = make_client([f"{p.host}:{p.port}" for p in proxies], timeout=0.15)
    spread(cache)
    for proxy in proxies:
        proxy.add(toxics.Latency(latency_ms=60))
    wall, error = timed(lambda: cache.get_many(KEYS))
    assert error is None, repr(error)  # in turn: 3 x 60 ms > 150 ms, or a share < 60 ms
    assert wall < 0.12


def test_one_frozen_node_leaves_the_others_answered_within_one_budget(
        memcached_cluster: Any, make_client: MakeClient) -> None:
    cache = make_client(memcached_cluster.addresses, breaker_enabled=False)
    spread(cache)
    frozen = memcached_cluster.members[0]
    good = {k for k in KEYS if cache.node_for(k) != frozen.address}
    frozen.freeze()
    try:
        wall, error = timed(lambda: cache.get_many(KEYS))
    finally:
        frozen.thaw()
    assert isinstance(error, ResilienceError)
    assert set(error.partial) == good
    assert set(error.failed_keys) == set(KEYS) - good
    assert wall < 2 * BUDGET
