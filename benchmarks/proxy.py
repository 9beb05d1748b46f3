"""What the fault proxy costs on the healthy path (no toxic): added latency per round trip
and bulk throughput, against talking to the server directly.

Three paths to the same loopback server (its own process):
  direct          client -> server
  proxy-process   client -> `resilience proxy` (its own process) -> server
  proxy-thread    client -> FaultProxy started in this process (a daemon thread) -> server;
                  how tests use it: the client and the proxy share the GIL

Round trips: 64-byte request, 64-byte echo, one at a time, on one connection.
Throughput: one connection sends N MB to a sink that reads everything and answers with
the byte count at end of stream.

Usage: python benchmarks/proxy.py [--quick] [--json FILE]
Every loop is bounded in count and time (MAX_SECONDS per measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resilience.bench.docgen import refresh_after_run
from resilience.bench.machine import cpu_model
from resilience.faults.proxy import FaultProxy

MAX_SECONDS = 60.0

SERVER = r"""
import socket, sys, threading
mode = sys.argv[1]
s = socket.create_server(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while d := c.recv(65536):
        c.sendall(d)
    c.close()
def sink(c):
    n = 0
    while d := c.recv(1 << 20):
        n += len(d)
    c.sendall(n.to_bytes(8, "big"))
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=echo if mode == "echo" else sink, args=(c,), daemon=True).start()
"""


def _first_line(proc: subprocess.Popen[str], what: str) -> str:
    """The child's first line of stdout; it exits at once if the child died first."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} exited with {proc.wait(5)} before printing its address")
    return line


def _end(proc: subprocess.Popen[str], sig_term: bool) -> None:
    """Stop a child, bounded: SIGTERM (if asked) for a clean exit, SIGKILL if it lingers."""
    if sig_term:
        proc.terminate()
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait(5)


@contextmanager
def server(mode: str) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode], stdout=subprocess.PIPE,
                            text=True)
    try:
        yield ("127.0.0.1", int(_first_line(proc, "server")))
    finally:
        _end(proc, sig_term=False)


@contextmanager
def proxy_process(upstream: tuple[str, int]) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "resilience", "proxy", "--upstream",
         f"{upstream[0]}:{upstream[1]}", "--duration", str(4 * MAX_SECONDS)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = _first_line(proc, "resilience proxy")  # "listening on HOST:PORT -> ..."
        host, port = line.split()[2].rsplit(":", 1)
        yield (host, int(port))
    finally:
        _end(proc, sig_term=True)


@contextmanager
def proxy_thread(upstream: tuple[str, int]) -> Iterator[tuple[str, int]]:
    with FaultProxy(upstream) as p:
        yield p.address


def round_trips(addr: tuple[str, int], n: int) -> list[float]:
    payload = b"x" * 64
    out: list[float] = []
    with socket.create_connection(addr, timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = time.monotonic() + MAX_SECONDS
        for _ in range(n + n // 10):  # the first tenth warms up and is dropped
            t0 = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(s.recv(65536))
            out.append(time.perf_counter() - t0)
            if time.monotonic() > end:
                break
    return out[n // 10:]


def throughput(addr: tuple[str, int], megabytes: int) -> float:
    block = b"y" * (1 << 20)
    with socket.create_connection(addr, timeout=MAX_SECONDS) as s:
        t0 = time.perf_counter()
        for _ in range(megabytes):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 8 and (part := s.recv(8 - len(reply))):
            reply += part
        count = int.from_bytes(reply, "big")
        took = time.perf_counter() - t0
    if count != megabytes << 20:
        raise RuntimeError(f"sink got {count} bytes, sent {megabytes << 20}")
    return megabytes / took


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(us: list[float]) -> dict[str, float]:
    return {"n": len(us), "p50_us": pct(us, 0.5), "p90_us": pct(us, 0.9),
            "p99_us": pct(us, 0.99), "max_us": max(us), "mean_us": statistics.fmean(us)}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpu": cpu_model(), "cores": os.cpu_count(), "load1": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer round trips, less data")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args()
    n, mb, repeats = (2000, 32, 2) if args.quick else (10000, 128, 3)
    results: dict[str, Any] = {"machine": machine(), "round_trips": n, "megabytes": mb,
                               "repeats": repeats, "paths": {}}
    paths = {"direct": None, "proxy-process": proxy_process, "proxy-thread": proxy_thread}
    for name, wrap in paths.items():
        rtt: list[float] = []
        rates: list[float] = []
        for _ in range(repeats):
            with server("echo") as echo:
                if wrap is None:
                    rtt += round_trips(echo, n)
                else:
                    with wrap(echo) as addr:
                        rtt += round_trips(addr, n)
            with server("sink") as sink:
                if wrap is None:
                    rates.append(throughput(sink, mb))
                else:
                    with wrap(sink) as addr:
                        rates.append(throughput(addr, mb))
        results["paths"][name] = {
            "rtt": summary([t * 1e6 for t in rtt]),
            "throughput_mb_s": {"runs": rates, "median": statistics.median(rates)},
        }
    direct = results["paths"]["direct"]
    print(f"MACHINE {json.dumps(results['machine'])}")
    print(f"{'path':15} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'max us':>8} "
          f"{'added p50':>10} {'MB/s':>8}")
    for name, r in results["paths"].items():
        added = r["rtt"]["p50_us"] - direct["rtt"]["p50_us"]
        r["added_p50_us"] = added
        r["added_p99_us"] = r["rtt"]["p99_us"] - direct["rtt"]["p99_us"]
        print(f"{name:15} {r['rtt']['p50_us']:8.1f} {r['rtt']['p90_us']:8.1f} "
              f"{r['rtt']['p99_us']:8.1f} {r['rtt']['max_us']:8.1f} {added:10.1f} "
              f"{r['throughput_mb_s']['median']:8.1f}")
    pp = results["paths"]["proxy-process"]
    print(f"RESULT proxy_added_p50_us={pp['added_p50_us']:.1f} "
          f"proxy_added_p99_us={pp['added_p99_us']:.1f} "
          f"proxy_mb_s={pp['throughput_mb_s']['median']:.1f} "
          f"direct_mb_s={direct['throughput_mb_s']['median']:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        if not args.quick:  # the committed file: refresh README and docs
            for doc in refresh_after_run(Path(args.json)):
                print(f"regenerated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
