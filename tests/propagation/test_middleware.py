"""The WSGI and ASGI middleware against real servers on loopback (wsgiref threaded
server, uvicorn): the budget a request runs under, malformed headers, spent budgets,
and errors mapped to 504/503. Every test runs once per kind of middleware."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from resilience import CircuitOpenError, ConfigError, DeadlineExceededError, remaining
from resilience.propagation import asgi, wsgi

from ._servers import get, uvicorn_server, wsgi_server

MAX = 2.0  # the app's maximum budget in these tests, seconds


def _answer(path: str) -> bytes:
    """What the app does for ``path`` (both kinds): report the budget, or fail."""
    if path == "/deadline":
        raise DeadlineExceededError("an inner call ran out")
    if path == "/open":
        raise CircuitOpenError(retry_after=2.3)
    left = remaining()
    return b"none" if left is None else repr(left).encode()


def wsgi_app(runs: list[str]) -> wsgi.WSGIApp:
    def app(environ: dict[str, Any], start_response: wsgi.StartResponse) -> list[bytes]:
        runs.append(environ["PATH_INFO"])
        body = _answer(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    return app


def asgi_app(runs: list[str]) -> asgi.ASGIApp:
    async def app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        runs.append(scope["path"])
        if scope["path"] == "/sleep":
            await asyncio.sleep(5)  # cancelled at the deadline
        body = _answer(scope["path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    return app


Serve = Callable[..., AbstractContextManager[tuple[str, Any, list[str]]]]


@pytest.fixture(params=["wsgi", "asgi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """``with serve(**middleware options) as (url, middleware, runs):``"""

    @contextmanager
    def start(**options: Any) -> Iterator[tuple[str, Any, list[str]]]:
        runs: list[str] = []
        if request.param == "wsgi":
            mw: Any = wsgi.DeadlineMiddleware(wsgi_app(runs), **options)
            server = wsgi_server(mw)
        else:
            mw = asgi.DeadlineMiddleware(asgi_app(runs), **options)
            server = uvicorn_server(mw)
        with server as url:
            yield url, mw, runs

    return start


def _seen(url: str, path: str = "/budget", **headers: str) -> float | None:
    status, _, body = get(url, path, {k.replace("_", "-"): v for k, v in headers.items()})
    assert status == 200, (status, body)
    return None if body == b"none" else float(body)


def test_a_callers_budget_shortens_the_request_minus_the_reply_margin(serve: Serve) -> None:
    with serve(max_budget=MAX, reply_margin=0.05) as (url, _, _):
        seen = _seen(url, request_timeout_ms="300")
        assert seen is not None and 0 < seen <= 0.25
        seen = _seen(url, x_envoy_expected_rq_timeout_ms="400", connect_timeout_ms="350")
        assert seen is not None and 0 < seen <= 0.30


def test_without_a_header_the_request_gets_the_apps_maximum(serve: Serve) -> None:
    with serve(max_budget=MAX) as (url, _, _):
        seen = _seen(url)
        assert seen is not None and 1.0 < seen <= MAX
    with serve(max_budget=None) as (url, _, _):
        assert _seen(url) is None  # no cap and no header: no deadline at all


def test_a_caller_can_only_shorten_the_budget(serve: Serve) -> None:
    with serve(max_budget=MAX) as (url, _, _):
        seen = _seen(url, request_timeout_ms="60000", grpc_timeout="1H")
        assert seen is not None and seen <= MAX


def test_a_route_may_have_its_own_maximum(serve: Serve) -> None:
    def route_max(env: Any) -> float | None:
        path = env["PATH_INFO"] if "PATH_INFO" in env else env["path"]
        return 3.0 if path == "/report" else None

    with serve(max_budget=MAX, route_max=route_max) as (url, _, _):
        seen = _seen(url, "/report", request_timeout_ms="10000")
        assert seen is not None and MAX < seen <= 3.0
        seen = _seen(url, "/budget", request_timeout_ms="10000")
        assert seen is not None and seen <= MAX


def test_malformed_headers_are_ignored_and_counted_never_a_500(serve: Serve) -> None:
    with serve(max_budget=MAX) as (url, mw, runs):
        seen = _seen(url, request_timeout_ms="-5", connect_timeout_ms="9" * 40,
                     x_envoy_expected_rq_timeout_ms="soon")
        assert seen is not None and 1.0 < seen <= MAX
        seen = _seen(url, request_timeout_ms="1.5", connect_timeout_ms="200")
        assert seen is not None and seen <= 0.2
        assert mw.stats.malformed == {"request-timeout-ms": 2, "connect-timeout-ms": 1,
                                      "x-envoy-expected-rq-timeout-ms": 1}
        assert runs == ["/budget", "/budget"]


@pytest.mark.parametrize("headers", [
    {"request-timeout-ms": "0"},
    {"request-timeout-ms": "3"},  # under the 5 ms reply margin
    {"connect-timeout-ms": "900", "x-envoy-expected-rq-timeout-ms": "0"},
    {"grpc-timeout": "0n", "content-type": "application/grpc"},
])
def test_a_spent_budget_is_answered_504_before_any_work(
        serve: Serve, headers: dict[str, str]) -> None:
    with serve(max_budget=MAX) as (url, mw, runs):
        status, reply_headers, _ = get(url, "/budget", headers)
        assert status == 504
        assert reply_headers["resilience-deadline"] == "expired"
        assert runs == []
        assert mw.stats.snapshot()["expired"] == 1


def test_grpc_timeout_counts_only_for_grpc_content(serve: Serve) -> None:
    with serve(max_budget=MAX) as (url, _, runs):
        seen = _seen(url, grpc_timeout="0n")  # not gRPC content: ignored
        assert seen is not None and seen > 1.0
        assert runs == ["/budget"]


def test_errors_of_the_work_become_504_and_503(serve: Serve) -> None:
    with serve(max_budget=MAX) as (url, mw, _):
        status, headers, _ = get(url, "/deadline")
        assert (status, headers["resilience-deadline"]) == (504, "exceeded")
        status, headers, _ = get(url, "/open")
        assert (status, headers["resilience-deadline"]) == (503, "circuit-open")
        assert headers["retry-after"] == "3"  # 2.3 s rounded up to whole seconds
        stats = mw.stats.snapshot()
        assert (stats["requests"], stats["exceeded"], stats["circuit_open"]) == (2, 1, 1)


def test_bad_settings_raise_config_error_naming_them(serve: Serve) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_budget": -1}, "max_budget"), ({"max_budget": float("inf")}, "max_budget"),
        ({"reply_margin": "5ms"}, "reply_margin"), ({"header": ""}, "header")]
    for options, name in cases:
        with pytest.raises(ConfigError, match=name), serve(**options):
            pass


def test_asgi_awaits_are_cancelled_at_the_deadline() -> None:
    runs: list[str] = []
    mw = asgi.DeadlineMiddleware(asgi_app(runs), max_budget=MAX)
    with uvicorn_server(mw) as url:
        start = time.monotonic()
        status, headers, _ = get(url, "/sleep", {"request-timeout-ms": "300"})
        took = time.monotonic() - start
    assert (status, headers["resilience-deadline"]) == (504, "exceeded")
    assert took < 3.0  # the app would have slept 5 s
    assert runs == ["/sleep"] and mw.stats.snapshot()["exceeded"] == 1


def test_wsgi_error_after_start_response_still_becomes_504() -> None:
    """start_response called, headers not yet sent: PEP 3333 lets the 504 replace them."""

    def app(environ: dict[str, Any], start_response: wsgi.StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise DeadlineExceededError("ran out after starting the reply")

    mw = wsgi.DeadlineMiddleware(app, max_budget=MAX)
    with wsgi_server(mw) as url:
        status, headers, _ = get(url)
    assert (status, headers["resilience-deadline"]) == (504, "exceeded")


def test_wsgi_body_is_produced_under_the_deadline() -> None:
    """The server iterates the body outside the application call; each chunk still sees
    the request's deadline."""

    def app(environ: dict[str, Any], start_response: wsgi.StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield repr(remaining()).encode()

    with wsgi_server(wsgi.DeadlineMiddleware(app, max_budget=MAX)) as url:
        status, _, body = get(url, "/", {"request-timeout-ms": "400"})
    assert status == 200 and 0 < float(body) <= 0.4


def test_the_propagation_package_and_middleware_import_no_http_client() -> None:
    code = ("import sys, resilience.propagation, resilience.propagation.wsgi, "
            "resilience.propagation.asgi\n"
            "print(','.join(m for m in ('httpx', 'requests', 'grpc', 'uvicorn', 'urllib3')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == ""


def test_a_route_maximum_that_is_not_seconds_is_a_config_error() -> None:
    mw = wsgi.DeadlineMiddleware(wsgi_app([]), route_max=lambda env: "10s")  # type: ignore[arg-type,return-value]

    def start_response(*args: Any) -> Any:
        return None

    with pytest.raises(ConfigError, match=r"route_max\(\)='10s'"):
        mw({"PATH_INFO": "/"}, start_response)


async def test_asgi_passes_non_http_scopes_through_untouched() -> None:
    seen: list[tuple[str, float | None]] = []

    async def app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        seen.append((scope["type"], remaining()))

    async def receive() -> asgi.Message:
        return {"type": "lifespan.startup"}

    async def send(message: asgi.Message) -> None:
        return None

    mw = asgi.DeadlineMiddleware(app, max_budget=MAX)
    await mw({"type": "lifespan"}, receive, send)
    await mw({"type": "websocket", "headers": [(b"request-timeout-ms", b"0")]}, receive, send)
    assert seen == [("lifespan", None), ("websocket", None)]
    assert mw.stats.snapshot()["requests"] == 0
