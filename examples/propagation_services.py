"""Deadlines across services: an outer service passes what is left of its caller's budget
to the inner one; a budget spent in the outer service sends nothing downstream.

Both are plain WSGI apps on loopback (wsgiref); the outer calls the inner through the
httpx transport. Run: .venv/bin/python examples/propagation_services.py
(needs the extra resilience[propagation])
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import httpx

import resilience
from resilience.propagation.httpx import DeadlineTransport
from resilience.propagation.wsgi import DeadlineMiddleware


def inner_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The inner service: says how much of the budget reached it."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"inner_left": resilience.remaining()}).encode()]


def make_outer(inner_url: str) -> Any:
    client = httpx.Client(transport=DeadlineTransport(), timeout=10)

    def outer_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """The outer service: does some work (``?work=seconds``), then asks the inner."""
        work = float(environ.get("QUERY_STRING", "").removeprefix("work=") or 0)
        time.sleep(work)
        reply = client.get(f"{inner_url}/")  # sends request-timeout-ms = what is left
        start_response("200 OK", [("Content-Type", "application/json")])
        return [reply.content]

    return outer_app


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Quiet)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def call(url: str, budget_ms: int) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"request-timeout-ms": str(budget_ms)})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, "", reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("resilience-deadline", ""), b""


def main() -> None:
    inner = DeadlineMiddleware(inner_app, max_budget=5.0)
    with serve(inner) as inner_url:
        outer = DeadlineMiddleware(make_outer(inner_url), max_budget=2.0)
        with serve(outer) as outer_url:
            status, _, body = call(f"{outer_url}/?work=0.2", budget_ms=1000)
            left = json.loads(body)["inner_left"]
            print(f"caller gave 1000 ms, outer worked 200 ms: inner got {left * 1000:.0f} ms")
            assert status == 200 and 0 < left < 0.8  # less than the 1000 - 200 ms left

            status, marker, _ = call(f"{outer_url}/?work=0.4", budget_ms=300)
            print(f"caller gave 300 ms, outer worked 400 ms: {status} ({marker}); "
                  f"inner requests: {inner.stats.requests - 1}")
            assert (status, marker) == (504, "exceeded") and inner.stats.requests == 1

            status, marker, _ = call(f"{inner_url}/", budget_ms=0)
            print(f"inner called with a spent budget: {status} ({marker}), "
                  f"counted: {inner.stats.expired}")
            assert (status, marker) == (504, "expired") and inner.stats.expired == 1


if __name__ == "__main__":
    main()
