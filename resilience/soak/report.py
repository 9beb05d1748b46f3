"""The soak's result as JSON (everything) and Markdown (the tables a reader checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "write"]


def _outcomes(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary["outcomes"].items())


def _failed_share(outcomes: dict[str, int]) -> str:
    total = sum(outcomes.values())
    failed = total - outcomes.get("ok", 0) - outcomes.get("CircuitOpenError", 0)
    return f"{failed} of {total}" if total else "-"


def markdown(result: dict[str, Any]) -> str:
    """A Markdown report of one soak result."""
    c = result["config"]
    lines = [
        f"# Soak: {c['seconds']:g} s, seed {c['seed']}",
        "",
        f"Verdict: **{'no invariant violated' if result['ok'] else 'VIOLATED'}** "
        f"({result['violation_count']} violations). Replay: `{result['replay']}`",
        "",
        f"Datastores: {', '.join(c['datastores'])}; faults {', '.join(c['faults'])}; "
        f"budget {c['budget_ms']:g} ms per call, limit {c['limit_ms']:g} ms "
        f"(budget + 5 ms + {c['slack_ms']:g} ms scheduling slack); {c['threads']} sync "
        f"threads and 1 asyncio task per datastore, {c['pace_ms']:g} ms between calls; "
        f"warm-up {c['warmup_s']:g} s, faults {c['fault_phase_s']:g} s, tail {c['tail_s']:g} s. "
        f"Machine: {result['machine']['cpus']} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in result['machine']['load_avg'])} at the end.",
        "",
        f"Scheduling lag (a thread sleeping 10 ms, woken late by): p50 "
        f"{result['lag']['p50_ms']:g} ms, p99 {result['lag']['p99_ms']:g} ms, max "
        f"{result['lag']['max_ms']:g} ms over {result['lag']['count']} sleeps.",
        "",
        "## Calls",
        "",
        "| datastore | mode | calls | p50 ms | p99 ms | max ms | past limit "
        "| past limit in a stall | outcomes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for ds, modes in result["calls"].items():
        for mode, s in modes.items():
            lines.append(f"| {ds} | {mode} | {s['calls']} | {s['p50_ms']:g} | {s['p99_ms']:g} "
                         f"| {s['max_ms']:g} | {s['past_limit']} | {s['past_limit_in_stall']} "
                         f"| {_outcomes(s)} |")
    lines += ["", "## Failed calls by phase", "",
              "Calls that neither succeeded nor were rejected by an open breaker, per phase "
              "(by when they began): warm-up and tail are healthy, so failures there are the "
              "machine's or a slow recovery's.", "",
              "| datastore | mode | warm-up | faults | tail |", "|---|---|---:|---:|---:|"]
    for ds, modes in result["calls"].items():
        for mode, s in modes.items():
            cells = [_failed_share(s.get("by_phase", {}).get(p, {}))
                     for p in ("warm-up", "faults", "tail")]
            lines.append(f"| {ds} | {mode} | {' | '.join(cells)} |")
    lines += ["", "## Faults and breaker recovery", "",
              "*Closed after last heal*: from the removal of the last fault until every "
              "breaker of the datastore was closed. *Opened in the warm-up* and *re-opened "
              "after* count the times they opened in a healthy phase (calls that timed "
              "out on the loaded machine): the warm-up's count is the baseline.", "",
              "| datastore | schedule seed | windows | applied | breakers not closed "
              "| closed after last heal | goal met | opened in the warm-up | re-opened after "
              "| health probe |",
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for ds, r in result["recovery"].items():
        s = result["schedules"][ds]
        took = f"{r['closed_after_s']:g} s" + (" (stuck open)" if r.get("stuck") else "")
        met = "yes" if r["met"] else ("**no**" if r["enforced"] else "no (not enforced)")
        lines.append(f"| {ds} | {s['seed']} | {s['windows']} | {s['applied']} | "
                     f"{r['open_share'] * 100:.1f}% of the run | {took} | {met} | "
                     f"{r.get('opened_in_warmup', '-')} | {r.get('reopened_after_recovery', '-')} "
                     f"| {'yes' if r['health_probe'] else 'no'} |")
    lines += ["", "## Resources (first vs last quarter after warm-up, medians)", "",
              "| resource | start | end | growth | limit | max | ok |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in result["resources"].items():
        lines.append(f"| {name} | {r['start']:g} | {r['end']:g} | {r['growth']:+g} | "
                     f"+{r['limit']:g} | {r['max']:g} | {'yes' if r['ok'] else '**no**'} |")
    if result["nsq"]:
        n = result["nsq"]
        lines += ["", "## NSQ: acknowledged versus consumed", "",
                  f"{n['acknowledged']} acknowledged, {n['matched']} of them consumed, "
                  f"{n['lost']} lost; {n['consumed']} deliveries handled, "
                  f"{n['duplicates_past_dedup']} duplicates past the seen-store, "
                  f"{n['consumed_unacknowledged']} consumed whose publish raised "
                  "(queued, answer lost: at-least-once)."]
    if result["violations"]:
        lines += ["", "## Violations", ""]
        for v in result["violations"]:
            where = f" [{v['datastore']}]" if v["datastore"] else ""
            lines.append(f"- {v['invariant']}{where} at {v['offset']} s: {v['detail']} "
                         f"(schedule: {v['position']})")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path) -> list[Path]:
    """Write ``soak.json`` and ``soak.md`` into ``out`` (created); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "soak.json", out / "soak.md"]
    paths[0].write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    paths[1].write_text(markdown(result))
    return paths
