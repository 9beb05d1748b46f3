"""Prometheus and OpenTelemetry adapters count what the pipeline emits."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from resilience.config import BreakerOptions
from resilience.core.metrics import OpenTelemetryListener, PrometheusListener
from resilience.core.policy import Policy
from resilience.errors import BackendUnavailableError, CircuitOpenError
from resilience.testing.clock import FakeClock


def failing_policy(clock: FakeClock) -> Policy:
    options = BreakerOptions(minimum_calls=2, window_size=2, jitter=0.0)
    return Policy("cache", operation="get", breaker=options, clock=clock, rng=random.Random(1))


def drive(policy: Policy) -> None:
    def down() -> None:
        raise BackendUnavailableError("refused")

    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            policy.call(down)
    with pytest.raises(CircuitOpenError):
        policy.call(down)


def test_prometheus_counts_events_and_tracks_the_breaker_state() -> None:
    registry = CollectorRegistry()
    policy = failing_policy(FakeClock())
    policy.events.add_listener(PrometheusListener(registry))
    drive(policy)
    labels = {"service": "cache", "operation": "get", "endpoint": "cache"}
    value = registry.get_sample_value
    assert value("resilience_events_total", {"kind": "failure", "reason": "", **labels}) == 2
    rejected = {"kind": "rejected", "reason": "circuit_open", **labels}
    assert value("resilience_events_total", rejected) == 1
    state = value("resilience_breaker_state", {"service": "cache", "endpoint": "cache"})
    assert state == 2  # open
    histogram = {"service": "cache", "operation": "get", "outcome": "failure"}
    assert value("resilience_attempt_seconds_count", histogram) == 2


def test_opentelemetry_counts_events_and_state_changes() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    policy = failing_policy(FakeClock())
    policy.events.add_listener(OpenTelemetryListener(meter))
    drive(policy)
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, dict[tuple[tuple[str, object], ...], float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    key = tuple(sorted(p.attributes.items()))  # type: ignore[union-attr]
                    points.setdefault(metric.name, {})[key] = p.value  # type: ignore[union-attr]
    events = {dict(k)["kind"]: v for k, v in points["resilience.events"].items()}
    assert events["failure"] == 2 and events["rejected"] == 1
    (change,) = points["resilience.breaker.state_changes"]
    assert dict(change)["from"] == "closed" and dict(change)["to"] == "open"
