"""The proof: two real services on loopback, the outer (ASGI on uvicorn) calling the
inner (WSGI on wsgiref) through the httpx transport. The inner sees the outer's budget
minus what the outer spent; a spent budget does no work downstream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from resilience import remaining
from resilience.propagation import MARKER_HEADER, asgi, wsgi
from resilience.propagation.httpx import AsyncDeadlineTransport

from ._servers import get, uvicorn_server, wsgi_server


class Inner:
    """The inner service: reports the budget it runs under; counts arrivals (outside
    the middleware) and handler runs (inside)."""

    def __init__(self, reply_margin: float) -> None:
        self.arrivals = 0
        self.runs = 0
        self.middleware = wsgi.DeadlineMiddleware(self.handler, max_budget=5.0,
                                                  reply_margin=reply_margin)

    def handler(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.runs += 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"inner_left": remaining()}).encode()]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.arrivals += 1
        return self.middleware(environ, start_response)


def outer_app(inner_url: str) -> asgi.ASGIApp:
    """The outer service: ``/?spend=S&block=B`` awaits S seconds, blocks B seconds (work
    that cannot be cancelled), then calls the inner service and relays its answer."""

    clients: list[httpx.AsyncClient] = []

    async def app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        query = dict(p.split("=") for p in scope["query_string"].decode().split("&") if p)
        await asyncio.sleep(float(query.get("spend", 0)))
        time.sleep(float(query.get("block", 0)))
        outer_left = remaining()
        if not clients:  # one client for the server's one event loop, made on first use
            clients.append(httpx.AsyncClient(transport=AsyncDeadlineTransport(), timeout=10))
        reply = await clients[0].get(f"{inner_url}/")
        body = reply.content
        if reply.status_code == 200:
            body = json.dumps({**json.loads(body), "outer_left": outer_left}).encode()
        headers = [(b"content-type", b"application/json")]
        if MARKER_HEADER in reply.headers:  # relay the inner middleware's verdict
            headers.append((MARKER_HEADER.encode(), reply.headers[MARKER_HEADER].encode()))
        await send({"type": "http.response.start", "status": reply.status_code,
                    "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture
def services(request: pytest.FixtureRequest) -> Iterator[tuple[str, Inner, Any]]:
    inner = Inner(reply_margin=getattr(request, "param", 0.005))
    with wsgi_server(inner) as inner_url:
        outer = asgi.DeadlineMiddleware(outer_app(inner_url), max_budget=2.0)
        with uvicorn_server(outer) as outer_url:
            yield outer_url, inner, outer


def test_the_inner_service_sees_the_outer_budget_minus_what_was_spent(
        services: tuple[str, Inner, Any]) -> None:
    url, inner, _ = services
    status, _, body = get(url, "/?spend=0.2", {"request-timeout-ms": "1500"})
    assert status == 200, body
    seen = json.loads(body)
    # The outer had at most 1.5 s - 0.2 s spent; the inner got less than the outer had left.
    assert seen["outer_left"] <= 1.3
    assert 0 < seen["inner_left"] < seen["outer_left"]
    assert inner.runs == 1


def test_the_callers_cap_binds_every_hop(services: tuple[str, Inner, Any]) -> None:
    url, _, _ = services
    status, _, body = get(url, "/", {"request-timeout-ms": "60000"})  # outer max is 2 s
    assert status == 200, body
    assert json.loads(body)["inner_left"] <= 2.0


def test_a_budget_spent_in_the_outer_sends_nothing_downstream(
        services: tuple[str, Inner, Any]) -> None:
    url, inner, outer = services
    status, headers, _ = get(url, "/?block=0.4", {"request-timeout-ms": "300"})
    assert (status, headers["resilience-deadline"]) == (504, "exceeded")
    assert (inner.arrivals, inner.runs) == (0, 0)  # no request reached the inner service
    assert outer.stats.snapshot()["exceeded"] == 1


@pytest.mark.parametrize("services", [4.0], indirect=True)  # inner keeps 4 s back
def test_a_budget_spent_on_arrival_never_runs_the_inner_handler(
        services: tuple[str, Inner, Any]) -> None:
    """Whatever the outer sends (at most its 2 s maximum), the inner judges it spent."""
    url, inner, _ = services
    status, headers, _ = get(url, "/", {"request-timeout-ms": "2000"})
    assert (status, headers["resilience-deadline"]) == (504, "expired")  # the inner's 504
    assert (inner.arrivals, inner.runs) == (1, 0)
    assert inner.middleware.stats.snapshot()["expired"] == 1
