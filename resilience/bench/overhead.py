"""Healthy-path cost: subjects doing the same call, timed in interleaved rounds.

Generic over datastores: a plugin hands :func:`interleave` named callables that make the
same healthy call (the first one is the baseline, e.g. the raw driver) and gets one
:class:`~resilience.bench.model.OverheadRow` per subject.

Rounds of ``per_round`` calls per subject are grouped in cycles in which every subject
takes every position once (rotated order), so drift and bursts of load on a shared
machine hit every subject alike; comparisons are per cycle (``x base`` is the median over
cycles of the cycle's wall-time ratio, *CPU added* the median over cycles of the per-call
CPU difference, with its interquartile range as the spread). CPU is this thread's time
(:func:`time.thread_time`): the client-side cost, syscalls included, and not what other
processes on the machine (the server among them) do meanwhile.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from resilience.bench.model import OverheadRow

__all__ = ["compare_cpu", "interleave", "quartiles"]


def interleave(datastore: str, operation: str, subjects: Mapping[str, Callable[[], object]],
               cycles: int, per_round: int = 100, warmup: int = 200,
               cpu_clock: Callable[[], float] = time.thread_time) -> list[OverheadRow]:
    """Time every subject (the first is the baseline) in ``cycles`` cycles of rounds.

    ``cpu_clock``: this thread's CPU time by default; ``time.process_time`` for a driver
    that does part of each call on threads of its own (cassandra-driver's reactor).
    """
    names = list(subjects)
    n = len(names)
    base = names[0]
    for fn in subjects.values():  # connect, fill caches
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in names}  # per cycle, seconds
    cpu: dict[str, list[float]] = {name: [] for name in names}  # per cycle, µs per call
    rounds: dict[str, list[float]] = {name: [] for name in names}  # per round, µs per call
    for _ in range(cycles):
        w = dict.fromkeys(names, 0.0)
        c = dict.fromkeys(names, 0.0)
        for r in range(n):
            for name in names[r:] + names[:r]:
                fn = subjects[name]
                start, start_cpu = time.perf_counter(), cpu_clock()
                for _ in range(per_round):
                    fn()
                took = time.perf_counter() - start
                c[name] += cpu_clock() - start_cpu
                w[name] += took
                rounds[name].append(took / per_round * 1e6)
        for name in names:
            wall[name].append(w[name])
            cpu[name].append(c[name] / (n * per_round) * 1e6)
    rows = []
    for name in names:
        per_call = [x / (n * per_round) * 1e6 for x in wall[name]]
        ratio = statistics.median(v / b for v, b in zip(wall[name], wall[base], strict=True))
        added = [x - b for x, b in zip(cpu[name], cpu[base], strict=True)]
        lo, hi = quartiles(added)
        rows.append(OverheadRow(datastore, operation, name, statistics.median(per_call),
                                min(rounds[name]), max(rounds[name]), ratio,
                                statistics.median(cpu[name]), statistics.median(added),
                                lo, hi))
    return rows


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles of ``values`` (the one value, alone)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def compare_cpu(rows: Sequence[OverheadRow], subject: str = "wrapper",
                peer: str = "pybreaker + pymemcache") -> list[dict[str, Any]]:
    """Per operation measured for both: the CPU ``subject`` and ``peer`` add over the
    baseline (median and interquartile range over cycles) and whether subject <= peer."""
    out = []
    for row in rows:
        if row.subject != subject:
            continue
        other = next((r for r in rows if r.subject == peer and r.operation == row.operation
                      and r.datastore == row.datastore), None)
        if other is None:
            continue
        out.append({
            "datastore": row.datastore, "operation": row.operation,
            "subject": subject, "subject_added_us": row.cpu_added_us,
            "subject_iqr_us": [row.cpu_added_p25, row.cpu_added_p75],
            "peer": peer, "peer_added_us": other.cpu_added_us,
            "peer_iqr_us": [other.cpu_added_p25, other.cpu_added_p75],
            "at_most_peer": row.cpu_added_us <= other.cpu_added_us,
        })
    return out
