"""Prometheus and OpenTelemetry exporters: what a policy's calls and breaker show.

Pure logic with a fake clock; the same against a real frozen memcached is in
tests/clients/memcache/test_metrics_memcached.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from resilience.config import BreakerOptions, BulkheadOptions, RetryOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.metrics import OpenTelemetryListener, PrometheusListener
from resilience.core.policy import Policy
from resilience.errors import BackendUnavailableError, BulkheadFullError, CircuitOpenError
from resilience.testing.clock import FakeClock


def failing_policy(clock: FakeClock, **kw: Any) -> Policy:
    options = BreakerOptions(minimum_calls=2, window_size=2, failure_rate=1.0, jitter=0.0)
    return Policy("cache", operation="get", breaker=options, clock=clock,
                  rng=random.Random(1), **kw)


def down() -> None:
    raise BackendUnavailableError("refused")


def drive(policy: Policy) -> None:
    """Three successes, two failures (the breaker opens), one rejection."""
    for _ in range(3):
        assert policy.call(lambda: 1) == 1
    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            policy.call(down)
    with pytest.raises(CircuitOpenError):
        policy.call(down)


def test_prometheus_exports_calls_attempts_and_the_breaker() -> None:
    registry = CollectorRegistry()
    policy = failing_policy(FakeClock())
    PrometheusListener(registry).instrument(policy)
    drive(policy)
    value = registry.get_sample_value
    call = {"service": "cache", "operation": "get"}
    assert value("resilience_call_duration_seconds_count",
                 {**call, "outcome": "success", "error_type": ""}) == 3
    assert value("resilience_call_duration_seconds_count",
                 {**call, "outcome": "failure", "error_type": "BackendUnavailableError"}) == 2
    assert value("resilience_call_duration_seconds_count",
                 {**call, "outcome": "rejected", "error_type": "CircuitOpenError"}) == 1
    where = {"service": "cache", "endpoint": "cache"}
    assert value("resilience_attempts_total", {**where, "kind": "first"}) == 5
    assert value("resilience_circuit_state", {**where, "resilience_circuit_state": "open"}) == 1
    assert value("resilience_circuit_state",
                 {**where, "resilience_circuit_state": "closed"}) == 0
    assert value("resilience_breaker_state", where) == 2
    assert value("resilience_circuit_transitions_total",
                 {**where, "from_state": "closed", "to_state": "open"}) == 1
    assert value("resilience_events_total", {"kind": "rejected", "reason": "circuit_open",
                                             **call, "endpoint": "cache"}) == 1
    text = generate_latest(registry).decode()  # the text format renders
    assert "resilience_call_duration_seconds_bucket{" in text and 'le="+Inf"' in text


def test_prometheus_counts_fallbacks_probes_budget_and_bulkhead() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    policy = failing_policy(clock, fallback=0)
    PrometheusListener(registry).instrument(policy)
    for _ in range(3):
        assert policy.call(down) == 0  # two failures open the breaker; one rejected
    clock.advance(2.0)  # past the open interval: the next call is a half-open trial
    assert policy.call(lambda: 1) == 1
    value = registry.get_sample_value
    fallback = {"service": "cache", "operation": "get", "outcome": "fallback"}
    assert value("resilience_call_duration_seconds_count",
                 {**fallback, "error_type": "BackendUnavailableError"}) == 2
    assert value("resilience_call_duration_seconds_count",
                 {**fallback, "error_type": "CircuitOpenError"}) == 1
    assert value("resilience_attempts_total",
                 {"service": "cache", "endpoint": "cache", "kind": "probe"}) == 1
    assert value("resilience_call_duration_seconds_count", {
        "service": "cache", "operation": "get", "outcome": "success", "error_type": ""}) == 1
    assert value("resilience_circuit_transitions_total", {
        "service": "cache", "endpoint": "cache", "from_state": "half_open",
        "to_state": "closed"}) == 1

    full = Policy("pool", operation="get", bulkhead=BulkheadOptions(max_concurrent=1),
                  clock=clock)
    PrometheusListener(registry, namespace="b").instrument(full)
    with pytest.raises(BulkheadFullError):
        full.call(lambda: full.call(lambda: 1))
    assert value("b_bulkhead_rejections_total", {"service": "pool", "endpoint": "pool"}) == 1

    stingy = Policy("db", operation="get", idempotent=True, clock=clock,
                    retry=RetryOptions(attempts=3, budget_ratio=0.0, budget_min_per_second=0.0))
    PrometheusListener(registry, namespace="r").instrument(stingy)
    with pytest.raises(BackendUnavailableError):
        stingy.call(down)  # the retry it wants is refused by the budget
    assert value("r_retry_budget_exhausted_total", {"service": "db"}) == 1
    assert value("r_attempts_total", {"service": "db", "endpoint": "db", "kind": "first"}) == 1


def test_no_exporter_no_hot_hook_and_detach_restores_it() -> None:
    policy = failing_policy(FakeClock())
    assert policy.events.hot is None  # the healthy path calls nothing
    detach = PrometheusListener(CollectorRegistry()).instrument(policy)
    assert policy.events.hot is not None
    detach()
    assert policy.events.hot is None and policy.events.listeners == ()


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    points.setdefault(metric.name, []).append((dict(p.attributes or {}), p))
    return points


def test_opentelemetry_exports_the_same_and_the_semconv_duration() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    breaker = CircuitBreaker(BreakerOptions(minimum_calls=2, window_size=2, failure_rate=1.0,
                                            jitter=0.0), name="10.0.0.1:11211")
    policy = Policy("memcache", operation="get", clock=FakeClock(), breaker=breaker)
    OpenTelemetryListener(meter).instrument(policy)
    drive(policy)
    points = _points(reader)
    calls = {(a["outcome"], a.get("error.type")): p.count
             for a, p in points["resilience.call.duration"]}
    assert calls == {("success", None): 3, ("failure", "BackendUnavailableError"): 2,
                     ("rejected", "CircuitOpenError"): 1}
    db = {a.get("error.type"): (a, p.count) for a, p in points["db.client.operation.duration"]}
    attrs, count = db[None]
    assert count == 3 and attrs["db.system.name"] == "memcached"
    assert attrs["db.operation.name"] == "get"
    assert db["BackendUnavailableError"][1] == 2
    attempts = {a["kind"]: p.value for a, p in points["resilience.attempts"]}
    assert attempts == {"first": 5}
    states = {a["state"]: p.value for a, p in points["resilience.circuit.state"]}
    assert states["open"] == 1 and sum(states.values()) == 1
    (change,) = points["resilience.circuit.transitions"]
    assert change[0]["from"] == "closed" and change[0]["to"] == "open"
    events = {a["kind"]: p.value for a, p in points["resilience.events"]}
    assert events["failure"] == 2 and events["rejected"] == 1
