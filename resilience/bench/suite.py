"""One benchmark run: every (datastore, fault, subject), then the healthy-path overhead.

The run is bounded: per row at most ``calls`` calls and ``row_limit`` seconds, a hung
call is cut at ``cap``. Defaults keep a full run under five minutes on the project
machine and ``quick`` under one.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resilience.bench import plugin, scenarios
from resilience.bench.machine import cpu_model, package_versions
from resilience.bench.model import FaultRow, RunResult
from resilience.bench.runner import measure

__all__ = ["Settings", "run_suite"]


@dataclass(frozen=True, slots=True)
class Settings:
    """How hard to measure. ``budget`` is the time budget of raw-tuned and wrapper."""

    calls: int = 40
    cap: float = 5.0
    row_limit: float = 6.0
    budget: float = 0.1
    overhead_calls: int = 5000

    @classmethod
    def quick(cls) -> Settings:
        return cls(calls=12, cap=1.5, row_limit=1.0, overhead_calls=1000)


def _versions() -> dict[str, Any]:
    model = cpu_model()
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": f"{os.cpu_count()} x {model}" if model != "unknown" else str(os.cpu_count()),
        **package_versions(("pymemcache", "tenacity", "pybreaker", "aiomcache", "emcache"),
                           missing="missing"),
    }
    out["memcached"] = _memcached_version()
    # The machine may be shared: the load says how much to trust microsecond figures.
    out["load average at start"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return out


def _memcached_version() -> str:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    try:
        done = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip().removeprefix("memcached ") or "unknown"


def _row(ds: plugin.Datastore, sc: scenarios.Scenario, kind: str, site: scenarios.Site,
         s: Settings) -> FaultRow:
    subject = ds.subject(kind, site.nodes, s.budget, site.target)
    try:
        if sc.warm:
            subject.call()  # a healthy call first: the fault hits an open connection
        site.inject()
        try:
            m = measure(subject, calls=s.calls, cap=s.cap, time_limit=s.row_limit,
                        open_calls=1000 if kind == "wrapper" else 0, on_hang=site.clear,
                        pace=sc.pace)
        finally:
            site.clear()
        return FaultRow.measured(ds.name, sc.id, kind, m.durations, m.outcomes, s.cap,
                                 m.open_cost, m.note)
    finally:
        subject.close()


def run_suite(
    datastores: list[str],
    faults: list[str] | None,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    overhead: bool = True,
) -> RunResult:
    """Measure every selected datastore under every selected fault; return the result."""
    chosen = scenarios.select(faults)
    plugins = [plugin.load(name) for name in datastores]
    result = RunResult(_versions(), {
        "budget_s": settings.budget, "calls_per_row": settings.calls, "cap_s": settings.cap,
        "row_limit_s": settings.row_limit,
    })
    started = time.monotonic()
    total = len(plugins) * len(chosen) * len(plugin.SUBJECTS)
    done = 0
    with tempfile.TemporaryDirectory(prefix="resilience-bench-") as work_dir:
        for ds in plugins:
            env = scenarios.Env(ds, settings.budget, work_dir)
            for sc in chosen:
                reason = sc.unavailable()
                if reason is not None:
                    for kind in plugin.SUBJECTS:
                        done += 1
                        result.faults.append(FaultRow(ds.name, sc.id, kind, skipped=reason))
                    progress(f"[{done}/{total}] {ds.name} {sc.id}: skipped ({reason})")
                    continue
                site = sc.open(env)
                try:
                    for kind in plugin.SUBJECTS:
                        done += 1
                        progress(f"[{done}/{total}] {ds.name} {sc.id} {kind} ...")
                        row = _row(ds, sc, kind, site, settings)
                        result.faults.append(row)
                        assert row.stats is not None
                        progress(f"    p50 {row.cell(row.stats.p50)}  p99 "
                                 f"{row.cell(row.stats.p99)}  {row.outcomes}")
                finally:
                    site.close()
            if overhead:
                progress(f"{ds.name}: healthy-path overhead ...")
                server = ds.start_server(tempfile.mkdtemp(dir=work_dir))
                try:
                    result.overhead += ds.overhead(server.host, server.port,
                                                   settings.overhead_calls)
                    if ds.name == "memcached":  # the asyncio peers, same server
                        from resilience.bench import memcached_async

                        result.overhead += memcached_async.overhead(
                            server.host, server.port, settings.overhead_calls)
                finally:
                    scenarios.dispose(server)
    result.elapsed = time.monotonic() - started
    return result
