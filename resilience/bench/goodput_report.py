"""Figures and reports of ``resilience bench goodput`` (docs/bench.md#goodput).

A request is *good* when the service answered 200 within the load generator's timeout,
from the cache (``hit``/``miss``) or from its fallback; *goodput* is good requests per
second. Each request belongs to the phase in which it ended.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resilience.bench.goodput_load import OUTCOMES

__all__ = ["FIRST_HIT_GOAL_S", "RATIO_GOAL", "doc_section", "goals", "markdown", "summarize",
           "write_all"]

PHASES = ("healthy", "hung", "healed")
RATIO_GOAL = 0.95  # wrapper's hung-phase goodput / the always-fallback control's
FIRST_HIT_GOAL_S = 1.0  # first cache hit after the heal, seconds
FULL_SHARE = 0.9  # "full goodput": hits/s over one second >= this share of healthy goodput
_HIT, _MISS, _FALLBACK = (OUTCOMES.index(n) for n in ("hit", "miss", "fallback"))
_GOOD = {_HIT, _MISS, _FALLBACK}
_TIMEOUT = OUTCOMES.index("timeout")


def _pct(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def _phase_stats(ends: list[float], lats: list[float], codes: list[int], lo: float,
                 hi: float, samples: list[tuple[float, int]]) -> dict[str, Any]:
    idx = [i for i, t in enumerate(ends) if lo <= t < hi]
    good = sum(1 for i in idx if codes[i] in _GOOD)
    lat = sorted(lats[i] for i in idx)
    threads = [n for t, n in samples if lo <= t < hi]
    return {
        "requests": len(idx),
        "good": good,
        "goodput_per_s": round(good / (hi - lo), 1),
        "hits": sum(1 for i in idx if codes[i] == _HIT),
        "fallbacks": sum(1 for i in idx if codes[i] == _FALLBACK),
        "timeouts": sum(1 for i in idx if codes[i] == _TIMEOUT),
        "p50_ms": _ms(_pct(lat, 0.50)),
        "p99_ms": _ms(_pct(lat, 0.99)),
        "threads_max": max(threads) if threads else None,
    }


def _full_goodput_after(hit_ends: list[float], healed_at: float, end: float,
                        healthy_goodput: float) -> float | None:
    """Seconds from the heal to the start of the first 1 s window (100 ms steps) whose
    hits reach FULL_SHARE of the healthy goodput; None if none does."""
    need = FULL_SHARE * healthy_goodput
    if need <= 0:
        return None
    start = healed_at
    while start + 1.0 <= end + 1e-9:
        n = bisect.bisect_left(hit_ends, start + 1.0) - bisect.bisect_left(hit_ends, start)
        if n >= need:
            return round(start - healed_at, 2)
        start += 0.1
    return None


def summarize(*, datastore: str, mode: str, outage: float, start: float, frozen_at: float,
              healed_at: float, end: float,
              records: dict[str, tuple[list[float], list[float], list[int]]],
              threads: dict[str, list[tuple[float, int]]],
              request_timeout: float) -> dict[str, Any]:
    """One run's figures from the load generators' records (see module docstring)."""
    bounds = {"healthy": (start, frozen_at), "hung": (frozen_at, healed_at),
              "healed": (healed_at, end)}
    bin_s = 0.5 if end - start <= 60 else 2.0
    nbins = int((end - start) / bin_s + 1e-9)  # whole bins only: a partial one reads low
    subjects: dict[str, Any] = {}
    timeline: dict[str, list[float]] = {}
    for name, (ends, lats, codes) in records.items():
        phases = {p: _phase_stats(ends, lats, codes, lo, hi, threads.get(name, []))
                  for p, (lo, hi) in bounds.items()}
        hit_ends = sorted(t for t, c in zip(ends, codes, strict=True) if c == _HIT)
        after = [t for t in hit_ends if t >= healed_at]
        subjects[name] = {
            "phases": phases,
            "first_hit_after_heal_s": round(after[0] - healed_at, 3) if after else None,
            "full_goodput_after_heal_s": _full_goodput_after(
                hit_ends, healed_at, end, phases["healthy"]["goodput_per_s"]),
        }
        bins = [0] * nbins
        for t, c in zip(ends, codes, strict=True):
            b = int((t - start) / bin_s)
            if c in _GOOD and 0 <= b < nbins:
                bins[b] += 1
        timeline[name] = [round(n / bin_s, 1) for n in bins]
    return {
        "datastore": datastore,
        "mode": mode,
        "outage_s": outage,
        "phases_s": {p: [round(lo - start, 3), round(hi - start, 3)]
                     for p, (lo, hi) in bounds.items()},
        "request_timeout_s": request_timeout,
        "subjects": subjects,
        "timeline": {"bin_s": bin_s, "goodput_per_s": timeline},
    }


def goals(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The two goals of a run, each with its measured figure and whether it was met."""
    subjects = run["subjects"]
    out: list[dict[str, Any]] = []
    if "wrapper" in subjects and "fallback" in subjects:
        control = subjects["fallback"]["phases"]["hung"]["goodput_per_s"]
        wrapper = subjects["wrapper"]["phases"]["hung"]["goodput_per_s"]
        ratio = wrapper / control if control else None
        out.append({"goal": f"hung-phase goodput >= {RATIO_GOAL:.0%} of the control",
                    "measured": None if ratio is None else round(ratio, 3),
                    "met": ratio is not None and ratio >= RATIO_GOAL})
    if "wrapper" in subjects:
        first = subjects["wrapper"]["first_hit_after_heal_s"]
        out.append({"goal": f"first cache hit <= {FIRST_HIT_GOAL_S:g} s after the heal",
                    "measured": first,
                    "met": first is not None and first <= FIRST_HIT_GOAL_S})
    return out


def _cell(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:g}{unit}"


def _title(run: dict[str, Any]) -> str:
    return f"{run['datastore']}, {run['mode']} service, {run['outage_s']:g} s outage"


def _run_table(run: dict[str, Any]) -> str:
    rows = ["| subject | healthy ok/s | hung ok/s | healed ok/s | hung p50 / p99 | "
            "first hit after heal | full goodput after heal | threads healthy / hung |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in run["subjects"].items():
        ph = s["phases"]
        rows.append(
            f"| {name} | {ph['healthy']['goodput_per_s']:g} | {ph['hung']['goodput_per_s']:g} "
            f"| {ph['healed']['goodput_per_s']:g} | {_cell(ph['hung']['p50_ms'], ' ms')} / "
            f"{_cell(ph['hung']['p99_ms'], ' ms')} | {_cell(s['first_hit_after_heal_s'], ' s')} "
            f"| {_cell(s['full_goodput_after_heal_s'], ' s')} "
            f"| {_cell(ph['healthy']['threads_max'])} / {_cell(ph['hung']['threads_max'])} |")
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    """The whole report: machine, settings, one table per run, the goals."""
    st, m = result["settings"], result["machine"]
    lines = [
        "# Goodput: a service whose datastore hangs",
        "",
        f"Generated by `resilience bench goodput`; {m['cpu']}, {m['cores']} cores, load "
        f"average {m['load_average']} at the end, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f"; {result['duration_s']:g} s in all.",
        "",
        f"Each run: every subject's service under closed-loop load at once "
        f"({st['concurrency']} workers each, {st['request_timeout']:g} s request timeout), "
        f"{st['healthy']:g} s healthy, the datastore SIGSTOPped for the outage, "
        f"{st['healed']:g} s healed. ok/s = answered 200 (hit or fallback) within the "
        "timeout, by the phase in which the request ended; p50/p99 over every request "
        "of the phase, a timed-out one counted at the timeout. Columns: docs/bench.md#goodput.",
    ]
    for run in result["runs"]:
        lines += ["", f"## {_title(run)}", "",
                  _run_table(run), ""]
        for g in goals(run):
            verdict = "met" if g["met"] else "**missed**"
            lines.append(f"- wrapper: {g['goal']}: {_cell(g['measured'])} ({verdict})")
    return "\n".join(lines) + "\n"


def doc_section(result: dict[str, Any]) -> str:
    """The generated summary in docs/bench.md: per run, the hung-phase goodput of each
    subject as a share of the control's, and the first hit after the heal."""
    names = [n for n in result["runs"][0]["subjects"] if n != "fallback"]
    rows = ["| run | control ok/s (hung) | "
            + " | ".join(f"{n}: hung ok/s vs control" for n in names)
            + " | wrapper: first hit after heal |",
            "|---|---:|" + "---:|" * len(names) + "---:|"]
    for run in result["runs"]:
        subj = run["subjects"]
        control = subj["fallback"]["phases"]["hung"]["goodput_per_s"] if "fallback" in subj \
            else None
        shares = []
        for n in names:
            hung = subj[n]["phases"]["hung"]["goodput_per_s"]
            shares.append(f"{hung:g} ({hung / control:.0%})" if control else f"{hung:g}")
        first = subj.get("wrapper", {}).get("first_hit_after_heal_s")
        rows.append(f"| {_title(run)} | {_cell(control)} | "
                    + " | ".join(shares) + f" | {_cell(first, ' s')} |")
    m = result["machine"]
    return (f"The committed run (`benchmarks/results/goodput/`) took {result['duration_s']:g} s "
            f"on {m['cores']} x {m['cpu']} (load average at its end "
            + " ".join(f"{x:g}" for x in m["load_average"]) + "):\n\n"
            + "\n".join(rows) + "\n")


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10.0, 3.2 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        tl = run["timeline"]
        for name, series in tl["goodput_per_s"].items():
            xs = [(i + 0.5) * tl["bin_s"] for i in range(len(series))]
            ax.plot(xs, series, label=name, linewidth=1.2)
        lo, hi = run["phases_s"]["hung"]
        ax.axvspan(lo, hi, color="grey", alpha=0.2, label=f"{run['datastore']} frozen")
        ax.set_title(_title(run))
        ax.set_xlabel("seconds")
        ax.set_ylabel("good requests / s")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """results.md, results.json and goodput.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js, png = out_dir / "results.md", out_dir / "results.json", out_dir / "goodput.png"
    md.write_text(markdown(result), encoding="utf-8")
    js.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    _plot(result, png)
    return [md, js, png]
