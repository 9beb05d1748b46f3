"""Instructions a healthy memcached call costs, counted with callgrind: raw pymemcache,
pymemcache behind pybreaker, and the wrapper, on `get` and `set`.

Timing the client's CPU on a loaded 2-core machine is noisy (docs/bench.md); counting
the instructions the calling process executes is exact and does not depend on load.
Each subject runs in its own interpreter under ``valgrind --tool=callgrind``, once with
N and once with 3N calls after a warm-up; the difference over 2N is the cost of one call
(start-up and warm-up cancel out). Kernel work (the syscalls, the server) is not counted:
this is the client-side Python and C the call runs.

Usage: python benchmarks/instructions.py [--calls N] [--json FILE] [--markdown FILE]
Needs valgrind (``apt-get install valgrind``) and memcached (the harness installs it).
Every child is bounded (TIMEOUT seconds).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUBJECTS = ("raw", "pybreaker", "wrapper")
OPS = ("get", "set")
TIMEOUT = 600.0
VALUE = b"v" * 100


def child(subject: str, op: str, calls: int, port: int) -> None:
    """Run ``calls`` healthy calls of ``op`` through ``subject`` (after a warm-up)."""
    from pymemcache.client.base import Client

    raw = Client(("127.0.0.1", port), timeout=1.0, connect_timeout=1.0, no_delay=True)
    get: Callable[[], Any]
    put: Callable[[], Any]
    if subject == "raw":
        get, put = (lambda: raw.get("bench:key")), (
            lambda: raw.set("bench:key", VALUE, noreply=False))
    elif subject == "pybreaker":
        import pybreaker

        breaker = pybreaker.CircuitBreaker()
        get, put = (lambda: breaker.call(raw.get, "bench:key")), (
            lambda: breaker.call(raw.set, "bench:key", VALUE, noreply=False))
    else:
        from resilience.clients.memcache import Memcache

        cache = Memcache([f"127.0.0.1:{port}"], environ={}, timeout=1.0)
        get, put = (lambda: cache.get("bench:key")), (lambda: cache.set("bench:key", VALUE))
    put()
    fn: Callable[[], Any] = get if op == "get" else put
    for _ in range(200):
        fn()
    if op == "get" and fn() != VALUE:
        raise RuntimeError(f"{subject}: get did not read the value back")
    for _ in range(calls):
        fn()


def _count(subject: str, op: str, calls: int, port: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--child", subject, op, str(calls), str(port)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    found = re.search(r"Collected\s*:\s*([\d,]+)", out.stderr) or re.search(
        r"refs:\s*([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind of {subject} {op} failed:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def measure(calls: int, port: int) -> dict[str, dict[str, int]]:
    """Instructions per call, ``{op: {subject: n}}``."""
    result: dict[str, dict[str, int]] = {}
    for op in OPS:
        for subject in SUBJECTS:
            low, high = _count(subject, op, calls, port), _count(subject, op, 3 * calls, port)
            result.setdefault(op, {})[subject] = round((high - low) / (2 * calls))
            print(f"{op} {subject}: {result[op][subject]} instructions", file=sys.stderr)
    return result


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Instructions per healthy memcached call (callgrind)", "",
             f"Machine: {res['machine']}; Python {res['python']}; {res['calls']} and "
             f"{3 * res['calls']} calls per subject, the difference over "
             f"{2 * res['calls']}. Produced by `python benchmarks/instructions.py --json "
             "benchmarks/results/instructions.json --markdown "
             "benchmarks/results/instructions.md`.", "",
             "| op | raw pymemcache | pybreaker | wrapper | added: pybreaker | added: wrapper |",
             "|---|---:|---:|---:|---:|---:|"]
    for op, row in res["instructions"].items():
        raw = row["raw"]
        lines.append(f"| {op} | {raw} | {row['pybreaker']} | {row['wrapper']} | "
                     f"+{row['pybreaker'] - raw} | +{row['wrapper'] - raw} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--child", nargs=4, metavar=("SUBJECT", "OP", "CALLS", "PORT"))
    args = parser.parse_args(argv)
    if args.child:
        subject, op, calls, port = args.child
        child(subject, op, int(calls), int(port))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    if args.calls < 1:
        parser.error(f"--calls {args.calls}: expected at least 1")
    from resilience.servers.memcached import Memcached

    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as work:
        server = Memcached(Path(work), name="memcached-instructions", threads=1)
        server.start(timeout=15.0)
        try:
            counts = measure(args.calls, server.port)
        finally:
            server.kill()
    from resilience.bench.machine import cpu_model

    res = {"machine": f"{cpu_model()}, {platform.machine()}",
           "python": platform.python_version(), "calls": args.calls, "instructions": counts}
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
