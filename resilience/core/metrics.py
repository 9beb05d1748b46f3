"""Metrics exporters: Prometheus and OpenTelemetry (optional extra ``resilience[metrics]``).

Contract: docs/core.md#metrics. An exporter is attached to what a client or a `Policy`
already has (its event bus, its breakers, its retry budget)::

    exporter = PrometheusListener(registry)     # or OpenTelemetryListener(meter)
    exporter.instrument(cache)                  # a client or a Policy; as many as wanted

Prometheus (base units, ``resilience_`` prefix)::

    resilience_call_duration_seconds{service,operation,outcome,error_type}    histogram
        one per logical call (retries included); outcome success | failure |
        rejected | fallback; error_type the exception's class name ("" on success)
    resilience_attempts_total{service,endpoint,kind}  kind first | retry | probe | hedge
        (probe: half-open trial calls and background health probes; hedge: second
        attempts of hedged reads, counted when sent)
    resilience_circuit_state{service,endpoint,resilience_circuit_state}  state set
    resilience_breaker_state{service,endpoint}                 the same as one number
        0 closed, 1 half_open, 2 open, 3 forced_open, 4 forced_closed, 5 disabled
    resilience_circuit_transitions_total{service,endpoint,from_state,to_state}
    resilience_retry_budget_exhausted_total{service}           retries the budget refused
    resilience_bulkhead_rejections_total{service,endpoint}
    resilience_events_total{kind,service,operation,endpoint,reason}   every event

Cost. With no exporter, nothing: the pipeline's healthy path tests one tuple. With one,
a healthy call goes through ``EventBus.timer`` with no `Event` built: a dict lookup, a
bisect and one atomic ``next()`` on an ``itertools.count`` per histogram bucket and per
attempt counter; everything else is counted on the (rare) events, and the circuit
states, the transitions' totals and the budget are read when Prometheus scrapes (a
custom collector), not counted per call. Bucket counts are exact under threads (the
``next()`` is atomic); a histogram's ``_sum`` is a plain float addition and may miss a
concurrent addition. prometheus_client's own Histogram costs ~1.1 µs per observation
here, over the +0.3 µs a healthy call may pay, hence the own buckets.

OpenTelemetry: see :mod:`resilience.core._otel` (re-exported here).

Labels never hold a secret: endpoints are host:port and errors appear only as their
type name.
"""

from __future__ import annotations

import itertools
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from resilience.core.events import Event, EventBus

__all__ = [
    "BUCKETS",
    "STATE_VALUES",
    "OpenTelemetryListener",
    "PrometheusListener",
    "Source",
    "sources_of",
]

STATE_VALUES = {
    "closed": 0,
    "half_open": 1,
    "open": 2,
    "forced_open": 3,
    "forced_closed": 4,
    "disabled": 5,
}

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0)
"""Upper bounds (seconds) of the call-duration histogram buckets, +Inf implied."""

Count = Any  # itertools.count: next() is one atomic C call


def read(counter: Count) -> int:
    """An ``itertools.count``'s next number, without taking it (see ``_window``)."""
    return int(repr(counter)[6:-1])


class Source:
    """What an exporter reads at scrape time from one instrumented client or policy."""

    __slots__ = ("breakers", "budget", "service")

    def __init__(self, service: str, breakers: Callable[[], Iterable[Any]],
                 budget: Any = None) -> None:
        self.service = service
        self.breakers = breakers  # -> the breakers now (endpoints may be added later)
        self.budget = budget  # a RetryBudget or None

    def states(self) -> Iterator[tuple[str, str]]:
        """(endpoint, state value) of every breaker, as each last moved (no transition
        is caused by reading: an OPEN breaker past its interval reads ``open``)."""
        for b in self.breakers():
            yield b.name, b._state.value


def sources_of(target: Any) -> tuple[EventBus, Source | None]:
    """The event bus and the scrape-time source of a client (`ClientBase`), a `Policy`,
    or a bare `EventBus` (no source: no breaker states nor budget to read)."""
    if isinstance(target, EventBus):
        return target, None
    bus = target.events
    if hasattr(target, "breaker_registry"):  # a client: its registry holds its endpoints
        registry = target.breaker_registry
        return bus, Source(target.service, registry.__iter__, target.retry_budget)
    op = target.operation  # a Policy
    breaker = target.breaker
    return bus, Source(op.service, lambda: (breaker,), op.budget)


class _Hist:
    """Lock-free histogram: one ``itertools.count`` per bucket, +Inf last."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [itertools.count() for _ in range(len(BUCKETS) + 1)]
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        next(self.counts[bisect_left(BUCKETS, seconds)])
        self.sum += seconds

    def raw(self) -> list[int]:
        """Per-bucket counts (not cumulative)."""
        return [read(c) for c in self.counts]


def _cumulative(raw: list[int]) -> list[tuple[str, float]]:
    total, out = 0, []
    for le, n in zip((*map(repr, BUCKETS), "+Inf"), raw, strict=True):
        total += n
        out.append((le, float(total)))
    return out


def _add(a: list[int] | None, b: list[int]) -> list[int]:
    return b if a is None else [x + y for x, y in zip(a, b, strict=True)]


class _Store:
    """The counts both exporters keep: the success fast path and the event path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[tuple[str, str, str, str], _Hist] = {}
        self.attempts: dict[tuple[str, str, str], Count] = {}
        self.transitions: dict[tuple[str, str, str, str], Count] = {}
        self.bulkhead: dict[tuple[str, str], Count] = {}
        self.events: dict[tuple[str, str, str, str, str], Count] = {}
        self.sources: list[Source] = []
        # The healthy path: first-attempt successes of each (op, breaker) in a histogram
        # of their own; scrapes add them into the call histogram and, by their count,
        # into attempts{kind="first"} (counted once, read twice).
        self.first: dict[tuple[Any, Any], tuple[str, str, str, _Hist]] = {}
        self._fast: dict[Any, tuple[Any, list[Count], _Hist]] = {}
        self.timer = self._make_timer()

    def _make_timer(self) -> Callable[[Any, Any, float, str], None]:
        # A closure over locals: no attribute lookups on the healthy path. Durations
        # up to 1 ms (a healthy cache call) skip the bisect (~0.15 us here).
        get = self._fast.get
        slow = self._success

        def timer(op: Any, breaker: Any, seconds: float, kind: str) -> None:
            entry = get(op)
            if entry is not None and entry[0] is breaker and kind == "first":
                counts = entry[1]
                if seconds <= 0.001:
                    next(counts[0] if seconds <= 0.0005 else counts[1])
                else:
                    next(counts[bisect_left(BUCKETS, seconds)])
                entry[2].sum += seconds
                return
            slow(op, breaker, seconds, kind)

        return timer

    def _get(self, table: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
        value = table.get(key)
        if value is None:
            with self.lock:
                value = table.setdefault(key, make())
        return value

    def _success(self, op: Any, breaker: Any, seconds: float, kind: str) -> None:
        endpoint = breaker.name or op.endpoint
        if kind == "first":
            made = (op.service, op.name, endpoint, _Hist())
            entry = self._get(self.first, (op, breaker), lambda: made)
            entry[3].observe(seconds)
            self._fast[op] = (breaker, entry[3].counts, entry[3])
            return
        h = self._get(self.calls, (op.service, op.name, "success", ""), _Hist)
        h.observe(seconds)
        if kind != "hedge":  # a hedge was counted when it was sent (its event)
            next(self._get(self.attempts, (op.service, endpoint, kind), itertools.count))

    def histograms(self) -> dict[tuple[str, str, str, str], tuple[list[int], float]]:
        """Call-duration histograms now: (raw bucket counts, sum) per label set."""
        out: dict[tuple[str, str, str, str], tuple[list[int], float]] = {}
        for key, h in list(self.calls.items()):
            out[key] = (h.raw(), h.sum)
        for service, operation, _, h in list(self.first.values()):
            key = (service, operation, "success", "")
            raw, total = out.get(key, (None, 0.0))
            out[key] = (_add(raw, h.raw()), total + h.sum)
        return out

    def attempt_counts(self) -> dict[tuple[str, str, str], int]:
        """Attempts now per (service, endpoint, kind), first-attempt successes included."""
        out = {key: read(c) for key, c in list(self.attempts.items())}
        for service, _, endpoint, h in list(self.first.values()):
            key = (service, endpoint, "first")
            out[key] = out.get(key, 0) + sum(h.raw())
        return out

    def on_event(self, e: Event) -> None:
        """Count one event (never a success: those come through the timer)."""
        next(self._get(self.events, (e.kind, e.service, e.operation, e.endpoint,
                                     e.reason or ""), itertools.count))
        if e.outcome is not None and e.outcome != "success":
            err = type(e.error).__name__ if e.error is not None else ""
            key = (e.service, e.operation, e.outcome, err)
            self._get(self.calls, key, _Hist).observe(e.elapsed)
        kind = e.kind
        if (kind == "failure" and e.attempt_kind != "hedge") or kind == "health_probe" \
                or kind == "hedge":
            # A hedge counts once, when it is sent, whatever becomes of it.
            key3 = (e.service, e.endpoint, e.attempt_kind or "probe")
            next(self._get(self.attempts, key3, itertools.count))
        elif kind == "state_change":
            key4 = (e.service, e.endpoint, e.old_state or "", e.new_state or "")
            next(self._get(self.transitions, key4, itertools.count))
        elif kind == "rejected" and e.reason == "bulkhead_full":
            next(self._get(self.bulkhead, (e.service, e.endpoint), itertools.count))

    def attach(self, target: Any, on_event: Callable[[Event], None],
               timer: Callable[[Any, Any, float, str], None]) -> Callable[[], None]:
        bus, source = sources_of(target)
        unsubscribe = bus.add_listener(on_event)
        previous = bus.timer
        if previous is None:
            bus.timer = timer
        else:  # another exporter is there: both see every call
            def both(op: Any, breaker: Any, seconds: float, kind: str) -> None:
                previous(op, breaker, seconds, kind)
                timer(op, breaker, seconds, kind)

            bus.timer = both
        if source is not None:
            with self.lock:
                self.sources.append(source)

        def detach() -> None:
            unsubscribe()
            bus.timer = previous
            with self.lock:
                if source in self.sources:
                    self.sources.remove(source)

        return detach


def _labels(table: dict[Any, Count]) -> Iterator[tuple[list[str], int]]:
    # A plain counter table, read now.
    for key, counter in list(table.items()):
        yield list(key), read(counter)


class PrometheusListener:
    """Export a client's or a policy's calls, attempts and breakers to Prometheus.

    Args:
        registry: a ``prometheus_client.CollectorRegistry``; the default one if None.
        namespace: metric name prefix.

    Raises:
        ImportError: prometheus_client is not installed (``pip install
            'resilience[metrics]'``).

    Use :meth:`instrument` on each client or policy. Calling the listener with an
    event (it is an `EventBus` listener) counts it; successes are timed through the
    bus's ``timer`` and never need ``successes=True``.
    """

    def __init__(self, registry: Any = None, namespace: str = "resilience") -> None:
        import prometheus_client as prom

        self._ns = namespace
        self._store = _Store()
        (registry if registry is not None else prom.REGISTRY).register(self)

    def instrument(self, target: Any) -> Callable[[], None]:
        """Export ``target`` (a client, a `Policy` or an `EventBus`); returns a function
        that stops."""
        return self._store.attach(target, self._store.on_event, self._store.timer)

    def __call__(self, event: Event) -> None:
        self._store.on_event(event)

    def describe(self) -> list[Any]:
        return []  # collected at scrape time: no fixed description

    def collect(self) -> Iterator[Any]:
        """The prometheus_client collector protocol: every family, read now."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            StateSetMetricFamily,
        )

        ns, st = self._ns, self._store
        calls = HistogramMetricFamily(
            f"{ns}_call_duration_seconds", "Duration of logical calls (retries included)",
            labels=["service", "operation", "outcome", "error_type"])
        for key, (raw, total) in st.histograms().items():
            calls.add_metric(list(key), _cumulative(raw), total)
        yield calls
        attempts = CounterMetricFamily(f"{ns}_attempts",
                                       "Attempts by kind (first, retry, probe, hedge)",
                                       labels=["service", "endpoint", "kind"])
        for key3, n in st.attempt_counts().items():
            attempts.add_metric(list(key3), n)
        yield attempts
        for name, doc, labels, table in (
            ("circuit_transitions", "Circuit breaker state transitions",
             ["service", "endpoint", "from_state", "to_state"], st.transitions),
            ("bulkhead_rejections", "Calls rejected by a full bulkhead",
             ["service", "endpoint"], st.bulkhead),
            ("events", "Resilience events by kind (rejected, failure, retry, ...)",
             ["kind", "service", "operation", "endpoint", "reason"], st.events),
        ):
            family = CounterMetricFamily(f"{ns}_{name}", doc, labels=labels)
            for values, n in _labels(table):
                family.add_metric(values, n)
            yield family
        budget = CounterMetricFamily(f"{ns}_retry_budget_exhausted",
                                     "Retries refused by the retry budget", labels=["service"])
        states = StateSetMetricFamily(f"{ns}_circuit_state", "Circuit breaker state",
                                      labels=["service", "endpoint"])
        codes = GaugeMetricFamily(
            f"{ns}_breaker_state",
            "Circuit breaker state: " + ", ".join(f"{v} {k}" for k, v in STATE_VALUES.items()),
            labels=["service", "endpoint"])
        seen: set[tuple[str, str]] = set()
        for source in list(st.sources):
            if source.budget is not None:
                budget.add_metric([source.service], source.budget.refused)
            for endpoint, state in source.states():
                if (source.service, endpoint) in seen:
                    continue  # a registry shared by two instrumented clients
                seen.add((source.service, endpoint))
                states.add_metric([source.service, endpoint],
                                  {s: s == state for s in STATE_VALUES})
                codes.add_metric([source.service, endpoint], STATE_VALUES[state])
        yield budget
        yield states
        yield codes


# Below the names it imports from here (a cycle by design: one public module).
from resilience.core._otel import OpenTelemetryListener  # noqa: E402
