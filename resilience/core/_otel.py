"""The OpenTelemetry exporter (import it from :mod:`resilience.core.metrics`).

Instruments (units per the OpenTelemetry conventions)::

    resilience.call.duration            histogram, s: service, operation, outcome,
                                         error.type (absent on success)
    db.client.operation.duration        histogram, s (semantic conventions), for a
    messaging.client.operation.duration database or messaging service: db.system.name
                                         or messaging.system, db.operation.name or
                                         messaging.operation.name, server.address,
                                         server.port, error.type on failure
    resilience.attempts                 counter: service, endpoint, kind
    resilience.circuit.state            observable gauge, state set: service, endpoint,
                                         state; 1 for the current state, 0 for others
    resilience.circuit.transitions      counter: service, endpoint, from, to
    resilience.retry.budget.exhausted   observable counter: service
    resilience.bulkhead.rejections      counter: service, endpoint
    resilience.events                   counter: kind, service, operation, endpoint, reason

A healthy call records two histogram points (a few µs with the SDK; OpenTelemetry has
no lock-free path to borrow), through ``EventBus.timer``: no `Event` is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from resilience.core.events import Event
from resilience.core.metrics import STATE_VALUES, Source, _Store

__all__ = ["SEMCONV", "OpenTelemetryListener"]

SEMCONV: dict[str, tuple[str, str]] = {
    "memcache": ("db", "memcached"),
    "cassandra": ("db", "cassandra"),
    "elasticsearch": ("db", "elasticsearch"),
    "opensearch": ("db", "opensearch"),
    "nsq": ("messaging", "nsq"),
}
"""service -> (semantic-convention family, system name) of the per-operation duration."""

# Buckets the conventions advise for client operation durations.
_SEMCONV_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


def _server(endpoint: str) -> dict[str, Any]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        return {"server.address": endpoint} if endpoint else {}
    return {"server.address": host.strip("[]"), "server.port": int(port)}


class OpenTelemetryListener:
    """Export calls, attempts and breakers with OpenTelemetry metrics.

    Args:
        meter: an ``opentelemetry.metrics.Meter``; by default
            ``metrics.get_meter("resilience")`` from the global meter provider.

    Raises:
        ImportError: opentelemetry-api is not installed.

    Use :meth:`instrument` on each client or policy; calling the listener with an
    event counts it.
    """

    def __init__(self, meter: Any = None) -> None:
        if meter is None:
            from opentelemetry import metrics

            meter = metrics.get_meter("resilience")
        from opentelemetry.metrics import Observation

        self._observation = Observation
        self._store = _Store()  # only its sources and fast-path cache are used
        self._calls = meter.create_histogram(
            "resilience.call.duration", unit="s",
            description="Duration of logical calls (retries included)")
        self._semconv = {
            family: meter.create_histogram(
                f"{family}.client.operation.duration", unit="s",
                description=f"Duration of {family} client operations",
                explicit_bucket_boundaries_advisory=_SEMCONV_BUCKETS)
            for family in ("db", "messaging")
        }
        self._attempts = meter.create_counter(
            "resilience.attempts", unit="{attempt}", description="Attempts by kind")
        self._transitions = meter.create_counter(
            "resilience.circuit.transitions", unit="{transition}",
            description="Circuit breaker state transitions")
        self._bulkhead = meter.create_counter(
            "resilience.bulkhead.rejections", unit="{call}",
            description="Calls rejected by a full bulkhead")
        self._events = meter.create_counter(
            "resilience.events", unit="{event}", description="Resilience events by kind")
        meter.create_observable_gauge(
            "resilience.circuit.state", callbacks=[self._states], unit="1",
            description="Circuit breaker state set: 1 for the current state")
        meter.create_observable_counter(
            "resilience.retry.budget.exhausted", callbacks=[self._budgets], unit="{retry}",
            description="Retries refused by the retry budget")
        # op -> (breaker, call attributes, semconv histogram, its attributes, attempts attrs)
        self._fast: dict[Any, tuple[Any, dict[str, Any], Any, dict[str, Any],
                                    dict[str, Any]]] = {}

    def instrument(self, target: Any) -> Callable[[], None]:
        """Export ``target`` (a client, a `Policy` or an `EventBus`); returns a function
        that stops."""
        return self._store.attach(target, self, self._timer)

    def _semconv_of(self, service: str, operation: str, endpoint: str,
                    error: str | None) -> tuple[Any, dict[str, Any]]:
        family, system = SEMCONV.get(service, ("", ""))
        if not family:
            return None, {}
        attrs: dict[str, Any] = {f"{family}.system" + (".name" if family == "db" else ""):
                                 system, f"{family}.operation.name": operation,
                                 **_server(endpoint)}
        if error:
            attrs["error.type"] = error
        return self._semconv[family], attrs

    def _timer(self, op: Any, breaker: Any, seconds: float, kind: str) -> None:
        entry = self._fast.get(op)
        if entry is None or entry[0] is not breaker or kind != "first":
            entry = self._entry(op, breaker, kind)
        self._calls.record(seconds, entry[1])
        if entry[2] is not None:
            entry[2].record(seconds, entry[3])
        self._attempts.add(1, entry[4])

    def _entry(self, op: Any, breaker: Any, kind: str) -> Any:
        endpoint = breaker.name or op.endpoint
        hist, attrs = self._semconv_of(op.service, op.name, endpoint, None)
        entry = (breaker, {"service": op.service, "operation": op.name, "outcome": "success"},
                 hist, attrs, {"service": op.service, "endpoint": endpoint, "kind": kind})
        if kind == "first":
            self._fast[op] = entry
        return entry

    def __call__(self, e: Event) -> None:
        attributes = {"kind": e.kind, "service": e.service, "operation": e.operation,
                      "endpoint": e.endpoint}
        if e.reason:
            attributes["reason"] = e.reason
        self._events.add(1, attributes)
        if e.outcome is not None and e.outcome != "success":
            err = type(e.error).__name__ if e.error is not None else "_OTHER"
            self._calls.record(e.elapsed, {"service": e.service, "operation": e.operation,
                                           "outcome": e.outcome, "error.type": err})
            hist, attrs = self._semconv_of(e.service, e.operation, e.endpoint, err)
            if hist is not None:
                hist.record(e.elapsed, attrs)
        kind = e.kind
        if kind == "failure" or kind == "health_probe":
            self._attempts.add(1, {"service": e.service, "endpoint": e.endpoint,
                                   "kind": e.attempt_kind or "probe"})
        elif kind == "state_change":
            self._transitions.add(1, {"service": e.service, "endpoint": e.endpoint,
                                      "from": e.old_state or "", "to": e.new_state or ""})
        elif kind == "rejected" and e.reason == "bulkhead_full":
            self._bulkhead.add(1, {"service": e.service, "endpoint": e.endpoint})

    def _sources(self) -> list[Source]:
        with self._store.lock:
            return list(self._store.sources)

    def _states(self, _options: Any) -> Iterator[Any]:
        seen: set[tuple[str, str]] = set()
        for source in self._sources():
            for endpoint, state in source.states():
                if (source.service, endpoint) in seen:
                    continue
                seen.add((source.service, endpoint))
                for s in STATE_VALUES:
                    yield self._observation(int(s == state), {
                        "service": source.service, "endpoint": endpoint, "state": s})

    def _budgets(self, _options: Any) -> Iterator[Any]:
        for source in self._sources():
            if source.budget is not None:
                yield self._observation(source.budget.refused, {"service": source.service})
