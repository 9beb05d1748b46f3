"""The benchmark's data: measured samples, result rows, the whole run. No I/O here.

A *row* is one (datastore, fault, subject) cell: the time from each call to its outcome,
over a bounded number of calls. A call still blocked at the cap is a *hang*: its time is
recorded as the cap and the row says ``hang >= cap``, since the real figure is unknown.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FaultRow", "OverheadRow", "RunResult", "Stats", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted, non-empty list."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class Stats:
    """p50, p99 and max of a set of durations, in seconds, and how many there were."""

    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1])


@dataclass(slots=True)
class FaultRow:
    """Outcome of one subject under one fault.

    Attributes:
        datastore: ``memcached``.
        fault: a fault id of docs/architecture.md#fault-modes (``established-blackhole``).
        subject: ``raw-default``, ``raw-tuned`` or ``wrapper``.
        stats: time to outcome of every call made (hangs count as the cap).
        outcomes: outcome name -> count (``BackendTimeoutError``, ``ok``, ``hang``...).
        hangs: calls still blocked at the cap.
        cap: seconds after which a call was abandoned.
        open_cost: for the wrapper, mean seconds of a call rejected by an open breaker.
        skipped: why the row was not measured (no root, no iptables...), else None.
        note: anything the reader should know about this cell.
    """

    datastore: str
    fault: str
    subject: str
    stats: Stats | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    hangs: int = 0
    cap: float = 0.0
    open_cost: float | None = None
    skipped: str | None = None
    note: str = ""

    @classmethod
    def measured(
        cls,
        datastore: str,
        fault: str,
        subject: str,
        durations: list[float],
        outcomes: list[str],
        cap: float,
        open_cost: float | None = None,
        note: str = "",
    ) -> FaultRow:
        counts = Counter(outcomes)
        return cls(
            datastore,
            fault,
            subject,
            Stats.of(durations),
            dict(counts),
            counts.get("hang", 0),
            cap,
            open_cost,
            None,
            note,
        )

    def cell(self, value: float) -> str:
        """Format one duration of this row, saying ``hang >= cap`` for hangs."""
        if self.hangs and value >= self.cap:
            return f"hang >= {self.cap:g} s"
        return format_duration(value)


@dataclass(frozen=True, slots=True)
class OverheadRow:
    """Healthy-path cost of one way of making a call (µs per call; spread over rounds)."""

    datastore: str
    operation: str
    subject: str
    median_us: float
    min_us: float
    max_us: float
    ratio: float  # median over rounds of the round's ratio to the raw driver
    cpu_us: float = 0.0  # median CPU µs per call (client side only)
    cpu_added_us: float = 0.0  # median over cycles of the CPU µs over the raw driver
    cpu_added_p25: float = 0.0  # interquartile range of that difference over cycles
    cpu_added_p75: float = 0.0


@dataclass(slots=True)
class RunResult:
    """Everything one ``resilience bench`` run measured, plus the machine it ran on."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    faults: list[FaultRow] = field(default_factory=list)
    overhead: list[OverheadRow] = field(default_factory=list)
    elapsed: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_duration(seconds: float) -> str:
    """Human duration: ``12 µs``, ``3.4 ms``, ``1.20 s``."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"
