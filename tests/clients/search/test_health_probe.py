"""Health probes of an open node, against real Elasticsearch and OpenSearch behind a fault
proxy whose latency (1 s) outlasts both the calls' budget and the probe's timeout.

The probe (``GET /_cluster/health?local=true`` on a connection of its own) turns the
node's breaker half-open once the latency is gone, with no user call in between; the
proxy counts the probes' own connections. Steps: tests/clients/_recovery.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from resilience.core.breaker import BreakerState
from resilience.faults import toxics
from tests.clients._recovery import LONG, first_success, left_open_after, open_it, state

from .conftest import INDEX, Client, MakeClient

pytestmark = [pytest.mark.servers("elasticsearch", "opensearch"), pytest.mark.slow]


def _pause(client: Client) -> Any:
    def pause(seconds: float) -> None:
        if client.loop is not None:
            client.loop.run_until_complete(asyncio.sleep(seconds))
        else:
            time.sleep(seconds)
    return pause


def _proxied(node: Any, fault_proxy: Any) -> tuple[Any, str, str]:
    proxy = fault_proxy((node.host, node.port))
    host, port = proxy.address
    return proxy, f"http://{host}:{port}", f"{host}:{port}"


def test_probe_ends_the_open_interval_without_a_user_call(
        node: Any, fault_proxy: Any, make_client: MakeClient) -> None:
    proxy, url, endpoint = _proxied(node, fault_proxy)
    client = make_client(url, **LONG)
    pause = _pause(client)
    client.get(index=INDEX, id="1", timeout=5.0)
    breaker = client.breaker(endpoint)
    proxy.add(toxics.Latency(latency_ms=1000))
    try:
        open_it(lambda: client.get(index=INDEX, id="1"), breaker, pause)
        at_open = proxy.counters().accepted  # the last user connection
        assert left_open_after(breaker, pause, 0.8) is None  # the probes time out meanwhile
    finally:
        proxy.clear()
    # No user call from here on until the breaker has left OPEN.
    took = left_open_after(breaker, pause, 5.0)
    assert took is not None, "still open 5 s after the heal (the open interval is 30 s)"
    assert state(breaker) is BreakerState.HALF_OPEN
    assert proxy.counters().accepted > at_open  # the probes' own connections
    assert first_success(lambda: client.get(index=INDEX, id="1"), pause, 2.0) < 1.0
    assert state(breaker) is BreakerState.CLOSED


def test_probing_off_leaves_recovery_to_user_traffic(
        node: Any, fault_proxy: Any, make_sync: MakeClient) -> None:
    proxy, url, endpoint = _proxied(node, fault_proxy)
    client = make_sync(url, breaker_health_probe=False, **LONG)
    assert client.wrapped._probing is None
    client.get(index=INDEX, id="1", timeout=5.0)
    breaker = client.breaker(endpoint)
    proxy.add(toxics.Latency(latency_ms=1000))
    try:
        open_it(lambda: client.get(index=INDEX, id="1"), breaker, time.sleep)
        accepted = proxy.counters().accepted
    finally:
        proxy.clear()
    assert left_open_after(breaker, time.sleep, 1.5) is None
    assert proxy.counters().accepted == accepted  # nothing connected meanwhile
