"""Overhead of the pipeline on a healthy call, and the cost of an open-breaker reject.

Usage::

    python benchmarks/overhead.py [--quick] [--json FILE] [--markdown FILE]

Measures microseconds per call *added* over a bare call of the same function (sync and
async), the absolute cost of a call rejected by an open breaker (raise and catch
included), and, in the same run and the same way, pybreaker, circuitbreaker and tenacity
doing the same job. Every case is timed in each of ``repeats`` rounds, interleaved with
its baseline, so load on the machine hits both alike, and timed in process CPU time
(``time.process_time``) so time spent descheduled does not count; the table gives the
median and the 10th/90th percentiles over rounds. Targets (not asserted anywhere): sync
pipeline <= 1.0 µs, async <= 1.5 µs, reject <= 1.0 µs, and what a Prometheus exporter
adds to a healthy pipeline call <= 0.3 µs (its baseline is the same call without one).

"Full pipeline" means: deadline (ambient + default timeout), bulkhead (unlimited, so
skipped), breaker (count window, closed), an idempotent operation with a retry policy
(the budget gets its deposit; no retry needed), an event bus with no listener.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import circuitbreaker
import prometheus_client
import pybreaker
import tenacity

from resilience import CircuitOpenError, Policy
from resilience.bench.docgen import refresh_after_run
from resilience.bench.machine import cpu_model, package_versions
from resilience.config import BreakerOptions, RetryOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.events import EventBus
from resilience.core.metrics import PrometheusListener
from resilience.core.pipeline import Operation, acall, call
from resilience.core.retry import RetryPolicy

TARGETS = {"sync": 1.0, "async": 1.5, "reject": 1.0, "exporter": 0.3}

# CPU time of this process, not wall time: the machine is shared, and time spent
# descheduled while others run is not overhead of the code under test.
CPU_TIME = time.process_time


def plain() -> int:
    return 1


def attempt(_remaining: float) -> int:
    return 1


async def aplain() -> int:
    return 1


async def aattempt(_remaining: float) -> int:
    return 1


def build() -> dict[str, Any]:
    """Every object the timed statements use, built once."""
    retry = RetryPolicy(RetryOptions(attempts=2))
    op = Operation("get", service="bench", timeout=1.0, idempotent=True, retry=retry)
    breaker = CircuitBreaker(BreakerOptions(), name="127.0.0.1:1")
    open_breaker = CircuitBreaker(BreakerOptions(), name="127.0.0.1:2")
    open_breaker.force_open(time.monotonic())
    policy = Policy("bench", retry=RetryOptions(attempts=2), idempotent=True)
    exported = EventBus()
    PrometheusListener(prometheus_client.CollectorRegistry()).instrument(exported)
    op_prom = Operation("get", service="bench", timeout=1.0, idempotent=True, retry=retry,
                        events=exported)
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    pb_open = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    pb_open.open()

    @circuitbreaker.circuit(failure_threshold=5, recovery_timeout=60)  # type: ignore[untyped-decorator]
    def cb_plain() -> int:
        return 1

    cb_open = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=600)
    cb_open_plain = cb_open(plain)
    with contextlib.suppress(ZeroDivisionError):
        cb_open.call(_fail)

    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(2), reraise=True)
    return {
        "plain": plain,
        "attempt": attempt,
        "call": call,
        "op": op,
        "op_prom": op_prom,
        "br": breaker,
        "br_open": open_breaker,
        "CircuitOpenError": CircuitOpenError,
        "guarded": policy(plain),
        "pb": pb,
        "pb_open": pb_open,
        "CircuitBreakerError": pybreaker.CircuitBreakerError,
        "cb_plain": cb_plain,
        "cb_open_plain": cb_open_plain,
        "CircuitBreakerErrorCB": circuitbreaker.CircuitBreakerError,
        "retrying": retrying,
        "ten_plain": tenacity.retry(stop=tenacity.stop_after_attempt(2), reraise=True)(plain),
    }


def _fail() -> None:
    raise ZeroDivisionError


# name: (statement, baseline statement or None for an absolute figure, group)
SYNC_CASES: dict[str, tuple[str, str | None, str]] = {
    "resilience pipeline.call (wrapper path)": ("call(op, br, attempt)", "attempt(1.0)", "sync"),
    "resilience @Policy decorator": ("guarded()", "plain()", "sync"),
    "resilience Prometheus exporter (added to pipeline.call)": (
        "call(op_prom, br, attempt)", "call(op, br, attempt)", "exporter"),
    "pybreaker CircuitBreaker.call": ("pb.call(plain)", "plain()", "sync"),
    "circuitbreaker @circuit": ("cb_plain()", "plain()", "sync"),
    "tenacity Retrying()(fn)": ("retrying(plain)", "plain()", "sync"),
    "tenacity @retry": ("ten_plain()", "plain()", "sync"),
    "resilience reject (open breaker)": (
        "try:\n    call(op, br_open, attempt)\nexcept CircuitOpenError:\n    pass",
        None,
        "reject",
    ),
    "pybreaker reject (open)": (
        "try:\n    pb_open.call(plain)\nexcept CircuitBreakerError:\n    pass",
        None,
        "reject",
    ),
    "circuitbreaker reject (open)": (
        "try:\n    cb_open_plain()\nexcept CircuitBreakerErrorCB:\n    pass",
        None,
        "reject",
    ),
}


def time_sync(stmt: str, env: dict[str, Any], number: int) -> float:
    """Seconds per execution of ``stmt``, best of 3 short runs."""
    timer = timeit.Timer(stmt, timer=CPU_TIME, globals=env)
    return min(timer.repeat(repeat=3, number=number)) / number


AsyncCase = Callable[[int], Coroutine[Any, Any, float]]


def async_cases() -> dict[str, tuple[AsyncCase, AsyncCase]]:
    """name: (timed loop, baseline loop); each returns seconds per call."""
    retry = RetryPolicy(RetryOptions(attempts=2))
    op = Operation("get", service="bench", timeout=1.0, idempotent=True, retry=retry)
    breaker = CircuitBreaker(BreakerOptions(), name="127.0.0.1:1")
    cancel = Policy("bench", retry=RetryOptions(attempts=2), idempotent=True)(aplain)
    no_cancel = Policy(
        "bench", retry=RetryOptions(attempts=2), idempotent=True, cancel_at_deadline=False
    )(aplain)

    async def bare_attempt(n: int) -> float:
        t = CPU_TIME()
        for _ in range(n):
            await aattempt(1.0)
        return (CPU_TIME() - t) / n

    async def bare_plain(n: int) -> float:
        t = CPU_TIME()
        for _ in range(n):
            await aplain()
        return (CPU_TIME() - t) / n

    async def pipeline(n: int) -> float:
        t = CPU_TIME()
        for _ in range(n):
            await acall(op, breaker, aattempt)
        return (CPU_TIME() - t) / n

    def decorated(fn: Callable[[], Coroutine[Any, Any, int]]) -> AsyncCase:
        async def loop(n: int) -> float:
            t = CPU_TIME()
            for _ in range(n):
                await fn()
            return (CPU_TIME() - t) / n

        return loop

    async def wait_for(n: int) -> float:
        t = CPU_TIME()
        for _ in range(n):
            await asyncio.wait_for(aplain(), 1.0)
        return (CPU_TIME() - t) / n

    return {
        "resilience pipeline.acall (wrapper path)": (pipeline, bare_attempt),
        "resilience @Policy async, no cancel": (decorated(no_cancel), bare_plain),
        "resilience @Policy async, cancel at deadline": (decorated(cancel), bare_plain),
        "asyncio.wait_for (reference)": (wait_for, bare_plain),
    }


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "median": round(statistics.median(ordered), 3),
        "p10": round(pick(0.1), 3),
        "p90": round(pick(0.9), 3),
    }


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": package_versions(("resilience", "tenacity", "pybreaker", "circuitbreaker")),
    }


def run(quick: bool) -> dict[str, Any]:
    repeats, number = (5, 20_000) if quick else (15, 100_000)
    env = build()
    samples: dict[str, list[float]] = {name: [] for name in SYNC_CASES}
    acases = async_cases()
    samples.update({name: [] for name in acases})
    loop = asyncio.new_event_loop()
    try:
        for _ in range(repeats):
            for name, (stmt, base, _group) in SYNC_CASES.items():
                cost = time_sync(stmt, env, number)
                if base is not None:
                    cost -= time_sync(base, env, number)
                samples[name].append(cost * 1e6)
            for name, (timed, baseline) in acases.items():
                cost = min(loop.run_until_complete(timed(number)) for _ in range(3))
                cost -= min(loop.run_until_complete(baseline(number)) for _ in range(3))
                samples[name].append(cost * 1e6)
    finally:
        loop.close()
    groups = {name: group for name, (_s, _b, group) in SYNC_CASES.items()}
    groups.update({name: "async" for name in acases})
    rows = [
        {
            "case": name,
            "group": groups[name],
            "measure": "absolute" if groups[name] == "reject" else "added",
            "us_per_call": quantiles(values),
        }
        for name, values in samples.items()
    ]
    return {
        "machine": machine(),
        "import_ms": import_time_ms(repeats),
        "repeats": repeats,
        "calls_per_sample": number,
        "targets_us": TARGETS,
        "rows": rows,
    }


IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import {module};"
    " print((time.perf_counter() - t) * 1000)"
)


def import_time_ms(repeats: int) -> dict[str, dict[str, float]]:
    """Cold import in a fresh interpreter (ms), median and spread over ``repeats``
    processes: ``resilience`` (what service code pays at start-up) and the memcached
    wrapper module (which still imports no driver)."""
    out: dict[str, dict[str, float]] = {}
    for module in ("resilience", "resilience.clients.memcache"):
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", IMPORT_PROBE.format(module=module)],
                    capture_output=True, text=True, check=True, timeout=60,
                ).stdout
            )
            for _ in range(repeats)
        ]
        out[module] = quantiles(runs)
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        "# Overhead of the pipeline (µs per call)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']};"
        f" load average at start {m['load_average']}; {versions}.",
        f"{result['repeats']} rounds of {result['calls_per_sample']} calls per case;"
        " median and p10/p90 over rounds, in process CPU time. 'added' = µs over the bare"
        " call in the same round; 'absolute' = the whole rejected call, raise and catch"
        " included.",
        "Produced by `python benchmarks/overhead.py --json benchmarks/results/overhead.json"
        " --markdown benchmarks/results/overhead.md`.",
        "",
        "| case | measure | median | p10 | p90 | target |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        q = row["us_per_call"]
        target = ""
        if row["case"].startswith("resilience") and "cancel at deadline" not in row["case"]:
            target = f"<= {result['targets_us'][row['group']]}"
        lines.append(
            f"| {row['case']} | {row['measure']} | {q['median']:.3f} | {q['p10']:.3f}"
            f" | {q['p90']:.3f} | {target} |"
        )
    lines += ["", "Cold import in a fresh interpreter (ms, median and p10/p90 over processes):", ""]
    lines += ["| module | median | p10 | p90 |", "|---|---:|---:|---:|"]
    for module, q in result["import_ms"].items():
        lines.append(f"| `import {module}` | {q['median']:.1f} | {q['p10']:.1f} | {q['p90']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the results table")
    args = parser.parse_args(argv)
    result = run(args.quick)
    table = markdown(result)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    if args.json and not args.quick:  # the committed file: refresh README and docs
        for doc in refresh_after_run(Path(args.json)):
            print(f"regenerated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
