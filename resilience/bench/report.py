"""Reports of a benchmark run: terminal table, Markdown, JSON and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resilience.bench import memcached_async
from resilience.bench.model import FaultRow, OverheadRow, RunResult, format_duration
from resilience.bench.overhead import compare_cpu

__all__ = ["markdown", "table", "write_all"]

_FAULT_HEADER = ("datastore", "fault", "subject", "calls", "p50", "p99", "max", "outcomes",
                 "open breaker")
_OVERHEAD_HEADER = ("datastore", "op", "subject", "µs/call (median)", "min..max", "x raw",
                    "CPU µs/call", "CPU µs added", "added p25..p75")
_COMPARE_HEADER = ("datastore", "op", "wrapper CPU µs added", "p25..p75",
                   "pybreaker CPU µs added", "p25..p75", "wrapper <= pybreaker")


def _fault_cells(row: FaultRow) -> tuple[str, ...]:
    if row.skipped is not None or row.stats is None:
        return (row.datastore, row.fault, row.subject, "-", "skipped", "", "",
                row.skipped or "", "")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row.outcomes.items()))
    open_cost = format_duration(row.open_cost) if row.open_cost is not None else "-"
    return (row.datastore, row.fault, row.subject, str(row.stats.count),
            row.cell(row.stats.p50), row.cell(row.stats.p99), row.cell(row.stats.max),
            outcomes, open_cost)


def _overhead_cells(row: OverheadRow) -> tuple[str, ...]:
    return (row.datastore, row.operation, row.subject, f"{row.median_us:.1f}",
            f"{row.min_us:.1f}..{row.max_us:.1f}", f"{row.ratio:.3f}", f"{row.cpu_us:.1f}",
            f"{row.cpu_added_us:+.1f}", f"{row.cpu_added_p25:+.1f}..{row.cpu_added_p75:+.1f}")


def _compare_cells(c: dict[str, Any]) -> tuple[str, ...]:
    (slo, shi), (plo, phi) = c["subject_iqr_us"], c["peer_iqr_us"]
    return (c["datastore"], c["operation"], f"{c['subject_added_us']:+.2f}",
            f"{slo:+.2f}..{shi:+.2f}", f"{c['peer_added_us']:+.2f}", f"{plo:+.2f}..{phi:+.2f}",
            "yes" if c["at_most_peer"] else "no")


def _grid(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def table(result: RunResult) -> str:
    """The terminal summary: fault rows, then overhead rows."""
    parts = [_grid(_FAULT_HEADER, [_fault_cells(r) for r in result.faults])]
    sync, aio = _split(result.overhead)
    if sync:
        parts.append(_grid(_OVERHEAD_HEADER, [_overhead_cells(r) for r in sync]))
        compared = compare_cpu(sync)
        if compared:
            parts.append(_grid(_COMPARE_HEADER, [_compare_cells(c) for c in compared]))
    if aio:
        parts.append(_grid(memcached_async.header(), [memcached_async.cells(r) for r in aio]))
    return "\n\n".join(parts)


def _split(rows: list[OverheadRow]) -> tuple[list[OverheadRow], list[OverheadRow]]:
    """The sync overhead rows, and the asyncio ones (their own table)."""
    return ([r for r in rows if not memcached_async.is_async(r)],
            [r for r in rows if memcached_async.is_async(r)])


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown(result: RunResult) -> str:
    """The report as Markdown: machine, settings, both tables, notes."""
    m, s = result.machine, result.settings
    lines = [
        "# Failure latency",
        "",
        "Time from each call to its outcome under each fault mode of "
        "`docs/architecture.md#fault-modes`: raw driver with its defaults, raw driver "
        "with its best timeout settings (the same budget as the wrapper), and the "
        "resilience wrapper. A call still blocked at the cap is abandoned and shown as "
        "`hang >= cap`. *open breaker* is the mean cost of a call once the wrapper's "
        "breaker has opened.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()),
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in s.items())
        + f"; the run took {result.elapsed:.0f} s",
        "",
        "## Time to error",
        "",
        _md_table(_FAULT_HEADER, [_fault_cells(r) for r in result.faults]),
    ]
    notes = [f"- {r.fault} / {r.subject}: {r.note}" for r in result.faults if r.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    sync, aio = _split(result.overhead)
    if sync:
        lines += [
            "",
            "## Healthy-path cost",
            "",
            "Median wall-clock µs per call over interleaved rounds (min..max across "
            "rounds), loopback, one thread; `x raw` is the median over cycles of the "
            "cycle's ratio to the baseline for the same operation: raw pymemcache, and "
            "pymemcache's `HashClient` for `get_many` (10 keys over three nodes). The "
            "wall figure includes memcached's answer, so it moves with how busy or idle "
            "the machine is; *CPU µs* is the calling thread's CPU time per call, the "
            "client-side cost alone, and *added* is the median over cycles of its "
            "difference from the baseline, with its interquartile range.",
            "",
            _md_table(_OVERHEAD_HEADER, [_overhead_cells(r) for r in sync]),
        ]
        compared = compare_cpu(sync)
        if compared:
            lines += [
                "",
                "CPU the wrapper adds per healthy call over raw pymemcache, beside what "
                "pybreaker adds around the same pymemcache call (medians over cycles, with "
                "the interquartile range):",
                "",
                _md_table(_COMPARE_HEADER, [_compare_cells(c) for c in compared]),
            ]
    if aio:
        lines += ["", "## Healthy-path cost, asyncio", "", memcached_async.INTRO, "",
                  _md_table(memcached_async.header(), [memcached_async.cells(r) for r in aio])]
    return "\n".join(lines) + "\n"


def _plot(result: RunResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.faults if r.stats is not None]
    faults = list(dict.fromkeys(f"{r.datastore}\n{r.fault}" for r in rows))
    labels = [f.replace("-", "-\n", 1) if "\n" in f else f for f in faults]
    subjects = list(dict.fromkeys(r.subject for r in rows))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(faults)), 5.0))
    width = 0.8 / max(1, len(subjects))
    for si, subject in enumerate(subjects):
        xs, ys, hatches = [], [], []
        for fi, fault in enumerate(faults):
            for r in rows:
                if f"{r.datastore}\n{r.fault}" == fault and r.subject == subject:
                    assert r.stats is not None
                    xs.append(fi + si * width)
                    ys.append(max(r.stats.p99, 1e-6))
                    hatches.append("//" if r.hangs else "")
        bars = ax.bar(xs, ys, width, label=subject)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    ax.set_yscale("log")
    ax.set_ylabel("p99 time to outcome (s, log); hatched = hang, cut at the cap")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(faults))])
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend()
    ax.set_title("Failure latency: raw driver vs resilience wrapper")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(result: RunResult, out_dir: Path) -> list[Path]:
    """Write ``results.md``, ``results.json`` and ``failure-latency.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js, png = out_dir / "results.md", out_dir / "results.json", out_dir / "failure-latency.png"
    md.write_text(markdown(result), encoding="utf-8")
    data = result.to_json()
    data["cpu_added_comparison"] = compare_cpu(result.overhead)
    js.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _plot(result, png)
    return [md, js, png]
