"""What deadline propagation costs per request: CPU added by the WSGI and ASGI middleware
and by the httpx transport, and the cost of reading the headers.

Each path is timed in-process with no network, so the figure is the code's own CPU
cost: the middleware is called directly with a minimal request, the httpx transport
wraps ``httpx.MockTransport`` (an in-memory inner transport that answers 200). The
network costs of a real request (tens of microseconds on loopback and up) come on top
and are the same with or without propagation.

Usage: python benchmarks/propagation.py [--quick] [--out FILE.md]
Median of 5 repeats of N calls each (N=20000, --quick: 2000), thread CPU time; an
"added" figure is the median of the per-repeat differences, both paths timed back to back;
every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import resilience
from resilience.bench.machine import cpu_model
from resilience.propagation import asgi, read_budget, wsgi
from resilience.propagation.httpx import DeadlineTransport

REPEATS = 5


def _batch_us(fn: Callable[[], object], n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - start) / n * 1e6


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Median over REPEATS of the thread CPU time per call of ``fn``, in µs."""
    _batch_us(fn, n // 10)  # warm-up
    return statistics.median(_batch_us(fn, n) for _ in range(REPEATS))


def added_us(base: Callable[[], object], variant: Callable[[], object], n: int) -> float:
    """Median over REPEATS of (variant - base) µs per call, the two timed back to back in
    each repeat so that a load change on the shared machine hits both."""
    _batch_us(base, n // 10)
    _batch_us(variant, n // 10)
    return statistics.median(_batch_us(variant, n) - _batch_us(base, n)
                             for _ in range(REPEATS))


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


def _wsgi_call(app: Any, environ: dict[str, Any]) -> Callable[[], object]:
    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        return None

    def call() -> object:
        return list(app(dict(environ), start_response))
    return call


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _asgi_added_us(app: Any, headers: list[tuple[bytes, bytes]], n: int) -> float:
    """Like `added_us`: ``app`` against the bare application, in one event loop."""
    scope = {"type": "http", "path": "/", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    async def batch(target: Any, count: int) -> float:
        start = time.thread_time()
        for _ in range(count):
            await target(scope, receive, send)
        return (time.thread_time() - start) / count * 1e6

    async def run() -> float:
        await batch(_asgi_app, n // 10)
        await batch(app, n // 10)
        return statistics.median([await batch(app, n) - await batch(_asgi_app, n)
                                  for _ in range(REPEATS)])

    return asyncio.run(run())


def measure(n: int) -> list[tuple[str, float]]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "x",
               "HTTP_ACCEPT": "*/*", "HTTP_USER_AGENT": "bench"}
    with_header = {**environ, "HTTP_REQUEST_TIMEOUT_MS": "300"}
    malformed = {**environ, "HTTP_REQUEST_TIMEOUT_MS": "-300"}
    mw = wsgi.DeadlineMiddleware(_wsgi_app, max_budget=2.0)
    rows = [
        ("read_budget, 3 headers, one of them ours", per_call_us(
            lambda: read_budget([("host", "x"), ("accept", "*/*"),
                                 ("request-timeout-ms", "300")]), n)),
        ("WSGI middleware, no budget header, added", added_us(
            _wsgi_call(_wsgi_app, environ), _wsgi_call(mw, environ), n)),
        ("WSGI middleware, request-timeout-ms, added", added_us(
            _wsgi_call(_wsgi_app, with_header), _wsgi_call(mw, with_header), n)),
        ("WSGI middleware, malformed header (ignored, counted), added", added_us(
            _wsgi_call(_wsgi_app, malformed), _wsgi_call(mw, malformed), n)),
    ]
    asgi_headers = [(b"host", b"x"), (b"accept", b"*/*"), (b"request-timeout-ms", b"300")]
    rows.append(("ASGI middleware, request-timeout-ms, added (async with deadline)",
                 _asgi_added_us(asgi.DeadlineMiddleware(_asgi_app, max_budget=2.0),
                                asgi_headers, n)))
    inner = httpx.MockTransport(lambda request: httpx.Response(200, content=b"ok"))
    plain = httpx.Client(transport=inner)
    wrapped = httpx.Client(transport=DeadlineTransport(inner))

    def plain_get() -> object:
        with resilience.deadline(1.0):  # the same deadline block on both sides
            return plain.get("http://x/")

    def wrapped_get() -> object:
        with resilience.deadline(1.0):
            return wrapped.get("http://x/")

    rows.append(("httpx DeadlineTransport under a deadline, added",
                 added_us(plain_get, wrapped_get, n // 4)))
    rows.append(("for comparison: one httpx.Client.get on an in-memory transport",
                 per_call_us(lambda: plain.get("http://x/"), n // 4)))
    return rows


def report(rows: list[tuple[str, float]], quick: bool) -> str:
    n = "2000" if quick else "20000"
    added = [us for name, us in rows if name.endswith("added") or "added (" in name]
    low, high = min(added), max(added)
    lines = [
        "# Deadline propagation: CPU per request",
        "",
        f"`python benchmarks/propagation.py{' --quick' if quick else ''}`: median of "
        f"{REPEATS} repeats of {n} calls (httpx: a quarter of that), thread CPU time; "
        "an added figure is the median difference to the bare path timed back to back; "
        "in-process and without a network (the middleware called directly; httpx over "
        "`httpx.MockTransport`).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, CPython {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work shares the machine).",
        "",
        "| path | µs per request |",
        "|---|---:|",
        *(f"| {name} | {us:.2f} |" for name, us in rows),
        "",
        f"Reading: propagation adds {low:.0f}-{high:.0f} µs of CPU per request on a side "
        "(ASGI the most: `async with deadline` arms an asyncio timer), against an HTTP "
        "client's own cost shown last and the milliseconds of any budget it carries.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke run")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args(argv)
    text = report(measure(2000 if args.quick else 20000), args.quick)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
