"""Metrics adapters: event listeners for Prometheus and OpenTelemetry (optional extras).

Both are `EventBus` listeners; the client libraries are imported when an adapter is
built, never by ``import resilience``. Install ``resilience[metrics]``.

Prometheus (``prometheus_client``)::

    resilience_events_total{kind, service, operation, endpoint, reason}   counter
    resilience_breaker_state{service, endpoint}                          gauge
        0 closed, 1 half_open, 2 open, 3 forced_open, 4 forced_closed, 5 disabled
    resilience_attempt_seconds{service, operation, outcome}             histogram
        attempts that failed or were slow (the healthy path emits no event)

OpenTelemetry (``opentelemetry-api``; any SDK)::

    resilience.events        counter, attributes kind/service/operation/endpoint/reason
    resilience.breaker.state_changes  counter, attributes service/endpoint/from/to

Labels never hold a secret: endpoints are host:port and errors appear only as their
type name.
"""

from __future__ import annotations

from typing import Any

from resilience.core.events import Event

__all__ = ["STATE_VALUES", "OpenTelemetryListener", "PrometheusListener"]

STATE_VALUES = {
    "closed": 0,
    "half_open": 1,
    "open": 2,
    "forced_open": 3,
    "forced_closed": 4,
    "disabled": 5,
}


class PrometheusListener:
    """Count events, track breaker states and time failed/slow attempts in Prometheus.

    Args:
        registry: a ``prometheus_client.CollectorRegistry``; the default one if None.
        namespace: metric name prefix.

    Raises:
        ImportError: prometheus_client is not installed (``pip install
            'resilience[metrics]'``).
    """

    __slots__ = ("_duration", "_events", "_state")

    def __init__(self, registry: Any = None, namespace: str = "resilience") -> None:
        import prometheus_client as prom

        kw: dict[str, Any] = {"namespace": namespace}
        if registry is not None:
            kw["registry"] = registry
        self._events = prom.Counter(
            "events",
            "Resilience events by kind (rejected, failure, slow_call, retry, ...)",
            ["kind", "service", "operation", "endpoint", "reason"],
            **kw,
        )
        self._state = prom.Gauge(
            "breaker_state",
            "Circuit breaker state: " + ", ".join(f"{v} {k}" for k, v in STATE_VALUES.items()),
            ["service", "endpoint"],
            **kw,
        )
        self._duration = prom.Histogram(
            "attempt_seconds",
            "Duration of attempts that failed or were slow",
            ["service", "operation", "outcome"],
            **kw,
        )

    def __call__(self, event: Event) -> None:
        self._events.labels(
            event.kind, event.service, event.operation, event.endpoint, event.reason or ""
        ).inc()
        if event.kind == "state_change" and event.new_state is not None:
            self._state.labels(event.service, event.endpoint).set(
                STATE_VALUES.get(event.new_state, -1)
            )
        elif event.kind in ("failure", "slow_call"):
            self._duration.labels(event.service, event.operation, event.kind).observe(
                event.duration
            )


class OpenTelemetryListener:
    """Count events and breaker state changes with OpenTelemetry metrics.

    Args:
        meter: an ``opentelemetry.metrics.Meter``; by default
            ``metrics.get_meter("resilience")`` from the global meter provider.

    Raises:
        ImportError: opentelemetry-api is not installed.
    """

    __slots__ = ("_events", "_states")

    def __init__(self, meter: Any = None) -> None:
        if meter is None:
            from opentelemetry import metrics

            meter = metrics.get_meter("resilience")
        self._events = meter.create_counter(
            "resilience.events", unit="{event}", description="Resilience events by kind"
        )
        self._states = meter.create_counter(
            "resilience.breaker.state_changes",
            unit="{change}",
            description="Circuit breaker state changes",
        )

    def __call__(self, event: Event) -> None:
        attributes = {
            "kind": event.kind,
            "service": event.service,
            "operation": event.operation,
            "endpoint": event.endpoint,
        }
        if event.reason:
            attributes["reason"] = event.reason
        self._events.add(1, attributes)
        if event.kind == "state_change":
            self._states.add(
                1,
                {
                    "service": event.service,
                    "endpoint": event.endpoint,
                    "from": event.old_state or "",
                    "to": event.new_state or "",
                },
            )
