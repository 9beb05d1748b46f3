"""A real Prometheus registry scraped after a real fault: a frozen memcached node."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from resilience.core.metrics import PrometheusListener
from resilience.errors import ResilienceError
from tests.clients.memcache.conftest import MakeClient
from tests.clients.memcache.test_health_probe import _pause


def test_a_frozen_node_shows_in_a_scrape(make_client: MakeClient, memcached: Any) -> None:
    registry = CollectorRegistry()
    client = make_client([memcached.address])
    PrometheusListener(registry).instrument(client.cache)
    for _ in range(5):
        client.set("k", "v")
        assert client.get("k") == b"v"
    memcached.freeze()
    try:
        for _ in range(12):  # timeouts open the breaker (FAST: 50% of 4); the rest are rejected
            with contextlib.suppress(ResilienceError):
                client.get("k")
        _pause(client, 0.6)  # the prober checks the frozen node (and times out)
        scrape_while_frozen(registry, memcached.address)
    finally:
        memcached.thaw()
    value = registry.get_sample_value
    node = {"service": "memcache", "endpoint": memcached.address}
    deadline = time.monotonic() + 5.0  # healed: back to closed, shown in the next scrape
    while time.monotonic() < deadline:
        with contextlib.suppress(ResilienceError):
            if client.get("k") == b"v":
                break
        _pause(client, 0.05)
    assert value("resilience_circuit_state", {**node, "resilience_circuit_state": "closed"}) == 1
    assert value("resilience_circuit_transitions_total",
                 {**node, "from_state": "half_open", "to_state": "closed"}) == 1


def scrape_while_frozen(registry: CollectorRegistry, address: str) -> None:
    value = registry.get_sample_value
    node = {"service": "memcache", "endpoint": address}
    get = {"service": "memcache", "operation": "get"}
    assert value("resilience_call_duration_seconds_count",
                 {**get, "outcome": "success", "error_type": ""}) == 5
    failed = value("resilience_call_duration_seconds_count",
                   {**get, "outcome": "failure", "error_type": "BackendTimeoutError"})
    rejected = value("resilience_call_duration_seconds_count",
                     {**get, "outcome": "rejected", "error_type": "CircuitOpenError"})
    assert failed is not None and failed >= 2
    assert rejected is not None and rejected >= 2 and failed + rejected == 12
    # A failed call lasted about its 100 ms budget; a rejection took no time.
    assert value("resilience_call_duration_seconds_bucket",
                 {**get, "outcome": "failure", "error_type": "BackendTimeoutError",
                  "le": "0.05"}) == 0
    assert value("resilience_call_duration_seconds_bucket",
                 {**get, "outcome": "rejected", "error_type": "CircuitOpenError",
                  "le": "0.01"}) == rejected
    assert value("resilience_circuit_state", {**node, "resilience_circuit_state": "open"}) == 1
    assert value("resilience_circuit_transitions_total",
                 {**node, "from_state": "closed", "to_state": "open"}) == 1
    first = value("resilience_attempts_total", {**node, "kind": "first"})
    assert first is not None and first >= 10 + failed  # 10 healthy calls, the timeouts
    probes = value("resilience_attempts_total", {**node, "kind": "probe"})
    assert probes is not None and probes >= 1  # background health probes
    assert "resilience_circuit_state" in generate_latest(registry).decode()
