"""Renderers of the generated doc sections (see :mod:`resilience.bench.docgen`).

Each takes the parsed JSON of committed result files and returns Markdown ending with a
newline. Pure functions: no I/O, so a test can feed them any result.
"""

from __future__ import annotations

import statistics
import textwrap
from typing import Any

from resilience.bench.model import FaultRow, Stats, format_duration

__all__ = [
    "bench_run", "healthy_path", "overhead_table", "proxy_cost", "servers_table", "what_it_buys",
]

# Fault id -> how the README names it, in the README's order.
FAULT_LABELS = {
    "refused": "connection refused",
    "reject": "iptables REJECT",
    "connect-blackhole": "SYNs dropped",
    "established-blackhole": "ESTABLISHED packets dropped",
    "frozen": "server frozen (SIGSTOP)",
    "slow-drip": "reply trickles in (slow drip)",
    "garbage": "garbage reply",
    "node-loss": "one of three nodes lost",
}
_NOT_FAILURES = {"ok", "miss", "CircuitOpenError"}


def _para(text: str) -> str:
    return textwrap.fill(text, 88, break_long_words=False, break_on_hyphens=False) + "\n"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    rule = align or "|" + "---|" * len(header)
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _fault_row(d: dict[str, Any]) -> FaultRow:
    stats = Stats(**d["stats"]) if d.get("stats") else None
    return FaultRow(d["datastore"], d["fault"], d["subject"], stats, dict(d["outcomes"]),
                    d["hangs"], d["cap"], d["open_cost"], d["skipped"], d["note"])


def _p99(row: FaultRow | None) -> str:
    if row is None or row.stats is None:
        return "skipped"
    misses = row.outcomes.get("miss", 0)
    if misses:  # a miss here is a failure the client hid: say so rather than time it
        return f"{misses} of {row.stats.count} calls a silent miss"
    return row.cell(row.stats.p99)


def what_it_buys(run: dict[str, Any]) -> str:
    """The README's fault table: p99 of each subject and the open-breaker cost."""
    rows = {(r["fault"], r["subject"]): _fault_row(r) for r in run["faults"]
            if r["datastore"] == "memcached"}
    s = run["settings"]
    intro = (
        "From `benchmarks/results/failure-latency/results.md` "
        f"({s['budget_s'] * 1000:g} ms budget, {s['calls_per_row']} calls a row, a hung call"
        f" cut at {s['cap_s']:g} s; the full table has p50, max, outcomes and the healthy"
        " path):"
    )
    body, failed = [], []
    for fault, label in FAULT_LABELS.items():
        if not any(k[0] == fault for k in rows):
            continue
        wrapper = rows.get((fault, "wrapper"))
        cost = "-"
        if wrapper is not None and wrapper.open_cost is not None:
            cost = format_duration(wrapper.open_cost)
            failed.append(sum(n for k, n in wrapper.outcomes.items() if k not in _NOT_FAILURES))
        body.append([label, _p99(rows.get((fault, "raw-default"))),
                     _p99(rows.get((fault, "raw-tuned"))), _p99(wrapper), cost])
    header = ["fault", "raw pymemcache, defaults (p99)",
              f"raw pymemcache, timeouts = {s['budget_s'] * 1000:g} ms (p99)",
              "resilience (p99)", "resilience, breaker open"]
    after = ""
    if failed:
        span = f"{min(failed)}" if min(failed) == max(failed) else f"{min(failed)}-{max(failed)}"
        after = f" (here after {span} failed calls)"
    outro = (
        f"After the breaker opens{after}, a call to the failed node costs microseconds and"
        " does no I/O, while keys on the other nodes are served at normal speed."
        " pymemcache's per-`recv` timeout cannot stop a reply that trickles in; the"
        " wrapper's deadline does."
    )
    return _para(intro) + "\n" + _table(header, body) + "\n" + _para(outro)


def _us(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _overhead_medians(result: dict[str, Any]) -> dict[str, float]:
    return {r["case"]: float(r["us_per_call"]["median"]) for r in result["rows"]}


def overhead_table(result: dict[str, Any]) -> str:
    """Median µs per call of the pipeline and its peers, from overhead.json."""
    m = _overhead_medians(result)
    rows = [
        ["`pipeline.call`, healthy, added over the bare call",
         _us(m["resilience pipeline.call (wrapper path)"])],
        ["`pipeline.acall`, healthy, added", _us(m["resilience pipeline.acall (wrapper path)"])],
        ["`@Policy` decorator, sync / async (no cancel), added",
         f"{_us(m['resilience @Policy decorator'])} / "
         f"{_us(m['resilience @Policy async, no cancel'])}"],
        ["`@Policy` async with cancel at deadline, added",
         _us(m["resilience @Policy async, cancel at deadline"])],
        ["a call rejected by an open breaker, raise and catch included",
         _us(m["resilience reject (open breaker)"])],
        ["for comparison, added: pybreaker `CircuitBreaker.call`",
         _us(m["pybreaker CircuitBreaker.call"])],
        ["for comparison, added: circuitbreaker `@circuit` (breaker alone)",
         _us(m["circuitbreaker @circuit"])],
        ["for comparison, added: tenacity `@retry`", _us(m["tenacity @retry"])],
    ]
    return _table(["path", "µs per call"], rows, "|---|---:|")


def _ratios(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["operation"], r["subject"]): r for r in run.get("overhead", [])
            if r["datastore"] == "memcached"}


def healthy_path(overhead: dict[str, Any], run: dict[str, Any],
                 instructions: dict[str, Any]) -> str:
    """The README's healthy-path figures: the overhead table, import time, the
    memcached wrapper's ratio to raw pymemcache (from the failure-latency run) and the
    instructions it adds beside pybreaker (benchmarks/instructions.py)."""
    intro = ("Overhead on the healthy path, median µs per call in CPU time"
             " (`benchmarks/results/overhead.md` has the spread and the machine):")
    imp = overhead["import_ms"]["resilience"]["median"]
    text = f"A cold `import resilience` takes {imp:.0f} ms and imports no driver."
    r = _ratios(run)
    if r:
        get, put = r[("get", "wrapper")], r[("set", "wrapper")]
        pb_get, pb_set = r[("get", "pybreaker + pymemcache")], r[("set", "pybreaker + pymemcache")]
        met = "met" if get["ratio"] <= 1.03 else "not met"
        text += (
            " Against raw pymemcache on loopback"
            " (`benchmarks/results/failure-latency/results.md`), the memcached wrapper's"
            f" healthy `get` measured {get['ratio']:.3f}x and `set` {put['ratio']:.3f}x"
            f" (pybreaker-wrapped: {pb_get['ratio']:.3f}x and {pb_set['ratio']:.3f}x),"
            f" adding {get['cpu_added_us']:.1f} µs of client CPU to a `get`"
            f" (pybreaker: {pb_get['cpu_added_us']:.1f} µs). The target of 1.03x is {met}"
            " ([docs/bench.md](docs/bench.md) says why)."
        )
    ins = instructions["instructions"]
    added = {op: {k: row[k] - row["raw"] for k in ("wrapper", "pybreaker")}
             for op, row in ins.items()}
    text += (
        " Counted in instructions instead (callgrind, exact whatever the load;"
        " `benchmarks/results/instructions.md`), the wrapper adds"
        f" {added['get']['wrapper'] / 1000:.1f}k to a `get` of {ins['get']['raw'] / 1000:.1f}k"
        f" (pybreaker: {added['get']['pybreaker'] / 1000:.1f}k) and"
        f" {added['set']['wrapper'] / 1000:.1f}k to a `set`"
        f" (pybreaker: {added['set']['pybreaker'] / 1000:.1f}k)."
    )
    return _para(intro) + "\n" + overhead_table(overhead) + "\n" + _para(text)


def _mb_s(value: float) -> str:
    return f"{value / 1000:.1f} GB/s" if value >= 1000 else f"{value:.0f} MB/s"


def proxy_cost(result: dict[str, Any]) -> str:
    """docs/faults.md's paragraph on what the fault proxy costs, from proxy.json."""
    m, p = result["machine"], result["paths"]
    direct, proc, thread = p["direct"], p["proxy-process"], p["proxy-thread"]
    runs = [x for path in p.values() for x in [path["throughput_mb_s"]["runs"]]]
    spread = max(max(r) / min(r) for r in runs)
    text = (
        "`python benchmarks/proxy.py [--quick] [--json FILE]`; results in"
        " `benchmarks/results/proxy.json` (and `proxy.md`)."
        f" On the {m['cores']}-core test machine (shared with other jobs, load about"
        f" {m['load1']:.0f}), with no toxic, the proxy added {proc['added_p50_us']:.0f} µs per"
        " 64-byte round trip at the median as its own process"
        f" ({thread['added_p50_us']:.0f} µs as a thread of the test process; direct p50"
        f" {direct['rtt']['p50_us']:.0f} µs), with p99 round trips of"
        f" {proc['rtt']['p99_us'] / 1000:.1f} ms and {thread['rtt']['p99_us'] / 1000:.1f} ms"
        f" that follow the machine's load, and carried {_mb_s(proc['throughput_mb_s']['median'])}"
        f" (own process) and {_mb_s(thread['throughput_mb_s']['median'])} (thread) against"
        f" {_mb_s(direct['throughput_mb_s']['median'])} direct (medians of"
        f" {result['repeats']} runs that vary up to {spread:.1f}x)."
        " That is far below the timeouts it is used to test (tens of milliseconds and up),"
        " but not free: benchmarks that compare wrappers should send both sides through"
        " the same path."
    )
    return _para(text)


def _seconds(value: float) -> str:
    if value < 0.1:
        return f"{value:.2f} s"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _megabytes(values: list[float]) -> str:
    def one(v: float) -> str:
        return f"{v:.1f}" if v < 10 else f"{v:.0f}"

    if len(values) == 1:
        return f"{one(values[0])} MB"
    lo, hi = one(min(values)), one(max(values))
    return f"{lo} MB each" if lo == hi else f"{lo}-{hi} MB each"


def _server_cells(row: dict[str, Any]) -> list[str]:
    install = row["install"]
    shown = install["shown"] if "shown" in install else _seconds(install["seconds"])
    if row["status"] == "recorded":
        return [row["label"], row["from"], shown, row["start_shown"], row["memory_shown"]]
    tops = row["topologies"]
    start = "; ".join(_seconds(statistics.median(t["start_s"])) for t in tops)
    rss = [mb for t in tops for mb in t["rss_mb"]]
    return [row["label"], row["from"], shown, start, _megabytes(rss)]


def servers_table(result: dict[str, Any]) -> str:
    """The README's real-servers table from servers.json, with what is carried over."""
    m = result["machine"]
    intro = (f"Measured here ({m['cores']} cores; start is from spawn to the first answered"
             " probe, for a topology until every member answers; median of"
             f" {result['starts']} starts; `benchmarks/results/servers.md`):")
    rows = [_server_cells(r) for r in result["servers"]]
    table = _table(["server", "from", "install", "start", "memory (RSS)"], rows)
    recorded = [r["label"].split()[0] for r in result["servers"] if r["status"] == "recorded"]
    dates = sorted({r["install"]["measured_at"] for r in result["servers"]})
    notes = (f"Install times were measured once per server from an empty state"
             f" ({', '.join(dates)}); a machine where a server is installed cannot measure"
             " its install again, so they are carried over until one is not.")
    if recorded:
        when = sorted({r["measured_at"] for r in result["servers"] if r["status"] == "recorded"})
        head, last = recorded[:-1], recorded[-1]
        names = f"{', '.join(head)} and {last}" if head else last
        notes += (f" The {names} rows are carried over whole from"
                  f" {', '.join(when)} until the next full run of"
                  " `python benchmarks/servers.py`.")
    return _para(intro) + "\n" + table + "\n" + _para(notes)


def bench_run(run: dict[str, Any]) -> str:
    """docs/bench.md's summary of the committed failure-latency run's healthy path."""
    m, r = run["machine"], _ratios(run)
    text = (f"The committed run took {run['elapsed']:.0f} s on {m.get('cpus', 'unknown')}"
            f" (load average at start {m.get('load average at start', 'unknown')}).")
    if r:
        raw, get, pb = r[("get", "raw pymemcache")], r[("get", "wrapper")], r[
            ("get", "pybreaker + pymemcache")]
        text += (
            f" Healthy `get`: raw pymemcache {raw['median_us']:.1f} µs a call"
            f" ({raw['cpu_us']:.1f} µs of client CPU); the wrapper {get['ratio']:.3f}x raw"
            f" ({get['cpu_added_us']:+.1f} µs CPU), pybreaker {pb['ratio']:.3f}x"
            f" ({pb['cpu_added_us']:+.1f} µs CPU)."
        )
    return _para(text)
