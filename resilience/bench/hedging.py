"""``resilience bench --hedging``: p99 of memcached gets with and without hedging.

Against one real memcached behind the fault proxy, ``threads`` callers make ``calls``
gets each through one ``Memcache`` (its pool then holds about ``threads``
connections). First the healthy p99 is measured through the proxy; then each fault
adds a latency toxic of 3 x that p99 (at least 1 ms) and the same load runs with
hedging off and on (quantile delay, the default p95 and 5 % budget; ``min_delay``
0.2 ms so a sub-millisecond p95 is used as measured):

- ``node slow``: every connection is slow. A hedge goes to the same node (the key
  lives there alone), so it cannot help; the row shows the budget capping the extra
  load.
- ``1 in 4 connections slow``: a quarter of the connections (drawn per connection by
  the proxy's seeded random) are slow: a stalled connection, which a hedge on another
  connection beats.

Extra load = hedges sent / calls. Results go to benchmarks/results/hedging/
(results.json, results.md); docs/hedging.md quotes them. Every run is bounded: calls
have a 1 s budget and the rows a fixed count.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["OUT", "run_hedging"]

OUT = Path("benchmarks/results/hedging")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def _load(make: Callable[[], Any], call: Callable[[Any], object], threads: int,
          calls: int) -> dict[str, Any]:
    # ``threads`` callers, ``calls`` reads each, through one client from ``make()``.
    client = make()
    durations: list[float] = []
    lock = threading.Lock()
    errors = [0]

    def worker() -> None:
        mine: list[float] = []
        for _ in range(calls):
            began = time.perf_counter()
            try:
                call(client)
            except Exception:
                errors[0] += 1
            mine.append(time.perf_counter() - began)
        with lock:
            durations.extend(mine)

    try:
        for _ in range(4):
            call(client)  # connect (every node) outside the measurement
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(120.0)
        policy = client._hedge
        sent = policy.sent if policy is not None else 0
        won = policy.won if policy is not None else 0
    finally:
        client.close()
    n = len(durations)
    return {
        "calls": n, "errors": errors[0],
        "p50_ms": round(statistics.median(durations) * 1000, 3),
        "p99_ms": round(_percentile(durations, 0.99) * 1000, 3),
        "max_ms": round(max(durations) * 1000, 3),
        "hedges": sent, "hedges_won": won,
        "extra_load_pct": round(100.0 * sent / n, 2) if n else 0.0,
    }


def _memcache(address: str, threads: int, **options: Any) -> Callable[[], Any]:
    from resilience.clients.memcache import Memcache

    return lambda: Memcache([address], timeout=1.0, pool_size=threads * 2, retry_attempts=1,
                            breaker_slow_call_duration=5.0, environ={}, **options)


@contextlib.contextmanager
def _proxy(upstream: str, toxic: str | None) -> Iterator[str]:
    # The proxy in a process of its own (`resilience proxy`): in this one it would
    # share the GIL with the callers and its own latency would be the tail we measure.
    argv = [sys.executable, "-m", "resilience", "proxy", "--upstream", upstream,
            "--seed", "7", "--duration", "300"]
    if toxic is not None:
        argv += ["--toxic", toxic]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"resilience proxy did not start: {line!r}")
        yield line.split()[2]
    finally:
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)


def _memcached_rows(threads: int, calls: int, hedge: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]], float]:
    from resilience.clients.memcache import Memcache
    from resilience.servers.memcached import Memcached

    def get(cache: Any) -> object:
        return cache.get("hedge-bench")

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        server = Memcached(Path(work), name="memcached-hedge-bench", threads=1)
        server.start(timeout=15.0)
        try:
            with Memcache([server.address], environ={}) as setup:
                setup.set("hedge-bench", b"x" * 100)
            with _proxy(server.address, None) as address:
                healthy = _load(_memcache(address, threads), get, threads, calls)
                rows.append({"fault": "none", "hedging": "off", **healthy})
                rows.append({"fault": "none", "hedging": "on",
                             **_load(_memcache(address, threads, **hedge), get, threads, calls)})
            latency_ms = max(1.0, 3 * healthy["p99_ms"])
            for fault, probability in (("node slow", 1.0), ("1 in 4 connections slow", 0.25)):
                spec = f"latency:latency_ms={latency_ms:.3f},probability={probability}"
                for mode in ("off", "on"):
                    with _proxy(server.address, spec) as address:
                        make = _memcache(address, threads, **(hedge if mode == "on" else {}))
                        row = _load(make, get, threads, calls)
                    rows.append({"fault": fault, "hedging": mode, **row})
        finally:
            server.stop()
    return rows, latency_ms


def _search_rows(name: str, threads: int, calls: int, hedge: dict[str, Any]
                 ) -> tuple[list[dict[str, Any]], float]:
    # Two "nodes": two proxies in front of one server; the toxic slows one of them.
    from resilience.bench.search import ELASTICSEARCH, INDEX, OPENSEARCH, _wrapper_class

    bench = ELASTICSEARCH if name == "elasticsearch" else OPENSEARCH
    cls = _wrapper_class(name)
    with tempfile.TemporaryDirectory() as work:
        node = bench.start_server(work)
        upstream = f"{node.host}:{node.port}"

        def make(a: str, b: str, **options: Any) -> Callable[[], Any]:
            return lambda: cls([f"http://{a}", f"http://{b}"], timeout=1.0, retry_attempts=1,
                               breaker_slow_call_duration=5.0, pool_size=threads * 2,
                               environ={}, **options)

        def get(es: Any) -> object:
            return es.get(index=INDEX, id="1")

        rows: list[dict[str, Any]] = []
        with _proxy(upstream, None) as a, _proxy(upstream, None) as b:
            healthy = _load(make(a, b), get, threads, calls)
        rows.append({"fault": f"{name}: none", "hedging": "off", **healthy})
        latency_ms = max(1.0, 3 * healthy["p99_ms"])
        spec = f"latency:latency_ms={latency_ms:.3f}"
        # As Cassandra's rows: with half of the calls on the slow node the recent p95 is
        # the slow latency, so the last row hedges after the healthy p99 instead, with a
        # budget that can cover every call sent to that node.
        fixed = {**hedge, "hedge_delay": healthy["p99_ms"] / 1000, "hedge_budget_ratio": 0.5}
        for mode, options in (("off", {}), ("on", hedge),
                              (f"on, fixed {healthy['p99_ms']} ms, budget 50 %", fixed)):
            with _proxy(upstream, spec) as a, _proxy(upstream, None) as b:
                row = _load(make(a, b, **options), get, threads, calls)
            rows.append({"fault": f"{name}: 1 of 2 nodes slow", "hedging": mode, **row})
    return rows, latency_ms


DATASTORES = ("memcached", "elasticsearch", "opensearch", "cassandra")


def _datastore(row: dict[str, Any]) -> str:
    # Rows before the "datastore" key: the search ones are prefixed "<name>: ".
    name = row.get("datastore") or row["fault"].partition(": ")[0]
    return name if name in DATASTORES else "memcached"


def _kept(old: dict[str, Any], new: dict[str, Any], datastores: tuple[str, ...]
          ) -> dict[str, Any]:
    return {**{k: v for k, v in old.items() if k not in datastores}, **new}


def merge(old: dict[str, Any], datastores: tuple[str, ...], rows: list[dict[str, Any]],
          toxic_ms: dict[str, float]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The rows and toxic figures of this run (of ``datastores``) with those of the
    other datastores from the ``old`` results, in :data:`DATASTORES` order."""
    kept = [r for r in old.get("rows", []) if _datastore(r) not in datastores]
    toxic_ms = _kept(old.get("settings", {}).get("latency_toxic_ms_by_datastore", {}),
                     toxic_ms, datastores)
    order = {name: i for i, name in enumerate(DATASTORES)}
    merged = sorted(kept + rows, key=lambda r: order[_datastore(r)])  # stable sort
    return merged, dict(sorted(toxic_ms.items(), key=lambda kv: order.get(kv[0], 99)))


def run_hedging(out: Path = OUT, *, threads: int = 4, calls: int = 500,
                datastores: tuple[str, ...] = ("memcached",)) -> dict[str, Any]:
    """Run the rows of ``datastores`` (memcached, elasticsearch, opensearch, cassandra),
    write ``results.json`` and ``results.md`` under ``out``; return them. The rows of
    the datastores not run this time are kept from the ``results.json`` already there."""
    unknown = set(datastores) - set(DATASTORES)
    if unknown:
        raise ValueError(f"--hedging measures {', '.join(DATASTORES)}, "
                         f"not {', '.join(sorted(unknown))}")
    hedge = {"hedge_enabled": True, "hedge_min_delay": 0.0002}
    rows: list[dict[str, Any]] = []
    toxic_ms: dict[str, float] = {}
    for name in datastores:
        if name == "memcached":
            more, toxic_ms[name] = _memcached_rows(threads, calls, hedge)
        elif name == "cassandra":
            from resilience.bench.hedging_cassandra import cassandra_rows

            more, toxic_ms[name] = cassandra_rows(threads, max(50, calls // 5), hedge,
                                                  _load, _proxy)
        else:
            more, toxic_ms[name] = _search_rows(name, threads, max(50, calls // 5), hedge)
        rows += [{"datastore": name, **r} for r in more]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    loads = {name: load for name in datastores}
    previous = out / "results.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        rows, toxic_ms = merge(old, datastores, rows, toxic_ms)
        machine = old.get("machine", {})
        before = machine.get("load average at start by datastore") or {
            name: machine.get("load average at start", "?") for name in toxic_ms}
        loads = _kept(before, loads, datastores)
    latency_ms = toxic_ms.get("memcached", 0.0)
    result = {
        "settings": {"threads": threads, "calls_per_thread": calls,
                     "latency_toxic_ms": round(latency_ms, 3),
                     "latency_toxic_ms_by_datastore": {k: round(v, 3)
                                                       for k, v in toxic_ms.items()},
                     "hedge": "quantile 0.95 of the last 1000 calls, min_delay 0.2 ms, "
                              "budget 5 % + 1/s over 10 s"},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load average at start": load,
                    "load average at start by datastore": loads},
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    return result


def _loads(machine: dict[str, Any]) -> str:
    by = machine.get("load average at start by datastore")
    if not by or len(set(by.values())) == 1:
        return str(machine["load average at start"])
    return ", ".join(f"{v} ({k} run)" for k, v in by.items())


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table (what results.md holds)."""
    s = result["settings"]
    toxic = s.get("latency_toxic_ms_by_datastore", {"memcached": s["latency_toxic_ms"]})
    search = [name for name in toxic if name not in ("memcached", "cassandra")]
    lines = [
        "# Hedged reads: p99 with and without hedging",
        "",
        f"`resilience bench --hedging`: {s['threads']} threads x {s['calls_per_thread']} gets "
        f"through the fault proxy to one memcached; latency toxic {toxic.get('memcached')} ms "
        f"(3 x the healthy p99, at least 1 ms); hedge: {s['hedge']}. "
        + "".join(f"{name}: {s['threads']} threads x {max(50, s['calls_per_thread'] // 5)} "
                  f"gets of one document from two nodes (two proxies in front of one "
                  f"server), toxic {toxic[name]} ms on one. " for name in search)
        + (f"cassandra: {s['threads']} threads x {max(50, s['calls_per_thread'] // 5)} "
           f"prepared SELECTs at ONE from a 3-node ring (RF 3), toxic {toxic['cassandra']} ms "
           "on one coordinator (a proxy in front of its native port). "
           if "cassandra" in toxic else "")
        +
        "Machine: Python {python}, {cpus} CPUs, load average at start {load} (shared with "
        "other work).".format(python=result["machine"]["python"],
                              cpus=result["machine"]["cpus"],
                              load=_loads(result["machine"])),
        "",
        "| fault | hedging | p50 | p99 | max | hedges won / sent | extra load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['fault']} | {r['hedging']} | {r['p50_ms']} ms | {r['p99_ms']} ms "
                     f"| {r['max_ms']} ms | {r['hedges_won']} / {r['hedges']} "
                     f"| {r['extra_load_pct']} % |")
    shares = [r for r in result["rows"] if "answered_by_slow_host_pct" in r]
    if shares:
        lines += ["", "Cassandra, share of the answers that came from the slow coordinator: "
                  + ", ".join(f"{r['fault'].partition(': ')[2]} / hedging {r['hedging']}: "
                              f"{r['answered_by_slow_host_pct']} %" for r in shares) + "."]
    return "\n".join(lines) + "\n"
