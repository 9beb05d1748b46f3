"""The outbound side against real loopback servers: httpx (sync and async) and requests
against a wsgiref echo server, the grpcio interceptor against a grpcio server with
generic bytes handlers (no protobuf)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
import requests

import resilience
from resilience import DeadlineExceededError
from resilience.propagation.grpc import AsyncDeadlineInterceptor, DeadlineInterceptor
from resilience.propagation.httpx import AsyncDeadlineTransport, DeadlineTransport
from resilience.propagation.requests import deadline_session

from ._servers import wsgi_server

HEADER = "request-timeout-ms"


class Echo:
    """A WSGI app recording each request's budget header; ``/slow`` answers after 4 s,
    ``/drip`` sends a byte every 0.1 s for 4 s."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        self.seen.append(environ.get("HTTP_REQUEST_TIMEOUT_MS"))
        if environ["PATH_INFO"] == "/slow":
            time.sleep(4)
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/drip":
            for _ in range(40):
                time.sleep(0.1)
                yield b"."
        yield b"ok"


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, Echo]]:
    app = Echo()
    with wsgi_server(app) as url:
        yield url, app


def _budget_ms(value: str | None) -> int:
    assert value is not None
    return int(value)


# --- httpx, sync -------------------------------------------------------------------


def test_httpx_sends_the_remaining_budget(echo: tuple[str, Echo]) -> None:
    url, app = echo
    with httpx.Client(transport=DeadlineTransport()) as client:
        with resilience.deadline(0.5):
            assert client.get(f"{url}/").text == "ok"
        assert 0 < _budget_ms(app.seen[-1]) <= 500
        client.get(f"{url}/")  # no deadline: no header
        assert app.seen[-1] is None
        with resilience.deadline(0.5):
            client.get(f"{url}/", headers={HEADER: "40"})  # a smaller one stays
        assert app.seen[-1] == "40"


def test_httpx_sends_nothing_once_the_budget_is_spent(echo: tuple[str, Echo]) -> None:
    url, app = echo
    before = len(app.seen)
    with (httpx.Client(transport=DeadlineTransport()) as client, resilience.deadline(0),
          pytest.raises(DeadlineExceededError, match="nothing sent")):
        client.get(f"{url}/")
    assert len(app.seen) == before


@pytest.mark.parametrize("path", ["/slow", "/drip"])
def test_httpx_timeouts_are_clamped_to_the_deadline(echo: tuple[str, Echo], path: str) -> None:
    url, _ = echo
    with httpx.Client(transport=DeadlineTransport(), timeout=10) as client:
        start = time.monotonic()
        with resilience.deadline(0.3), pytest.raises(DeadlineExceededError):
            client.get(f"{url}{path}")
        assert time.monotonic() - start < 3.0  # the server takes 4 s; timeout=10


# --- httpx, asyncio ----------------------------------------------------------------


async def test_async_httpx_sends_the_budget_and_nothing_when_spent(
        echo: tuple[str, Echo]) -> None:
    url, app = echo
    async with httpx.AsyncClient(transport=AsyncDeadlineTransport()) as client:
        with resilience.deadline(0.5):
            assert (await client.get(f"{url}/")).text == "ok"
        assert 0 < _budget_ms(app.seen[-1]) <= 500
        before = len(app.seen)
        with resilience.deadline(0), pytest.raises(DeadlineExceededError):
            await client.get(f"{url}/")
        assert len(app.seen) == before
        start = time.monotonic()
        with resilience.deadline(0.3), pytest.raises(DeadlineExceededError):
            await client.get(f"{url}/slow", timeout=10)
        assert time.monotonic() - start < 3.0


# --- requests ----------------------------------------------------------------------


def test_requests_adapter_sends_the_budget_and_clamps_timeouts(
        echo: tuple[str, Echo]) -> None:
    url, app = echo
    with deadline_session() as session:
        with resilience.deadline(0.5):
            assert session.get(f"{url}/", timeout=(10, 10)).text == "ok"
        assert 0 < _budget_ms(app.seen[-1]) <= 500
        session.get(f"{url}/", timeout=5)
        assert app.seen[-1] is None
        before = len(app.seen)
        with resilience.deadline(0), pytest.raises(DeadlineExceededError):
            session.get(f"{url}/", timeout=5)
        assert len(app.seen) == before
        start = time.monotonic()
        with resilience.deadline(0.3), pytest.raises(DeadlineExceededError) as caught:
            session.get(f"{url}/slow", timeout=10)
        assert time.monotonic() - start < 3.0
        assert isinstance(caught.value.__cause__, requests.Timeout)


# --- grpcio ------------------------------------------------------------------------


class _Budgets:
    """Generic handlers: ``/t.T/Budget`` answers the time the server sees left (``none``
    without a deadline); ``/t.T/Stream`` streams it back three times."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def budget(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self.lock:
            self.calls += 1
        left = context.time_remaining()  # grpcio: ~9.2e18 when the call has no deadline
        return b"none" if left is None or left > 1e9 else repr(left).encode()

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(3):
            yield self.budget(request, context)


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[tuple[int, _Budgets]]:
    budgets = _Budgets()
    handler = grpc.method_handlers_generic_handler("t.T", {
        "Budget": grpc.unary_unary_rpc_method_handler(budgets.budget),
        "Stream": grpc.unary_stream_rpc_method_handler(budgets.stream),
    })
    server = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, budgets
    finally:
        server.stop(grace=None).wait(5)


@pytest.fixture
def grpc_channel(grpc_server: tuple[int, _Budgets]) -> Iterator[tuple[grpc.Channel, _Budgets]]:
    port, budgets = grpc_server
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{port}"),
                                     DeadlineInterceptor())
    with channel:
        yield channel, budgets


def _left(reply: bytes) -> float | None:
    return None if reply == b"none" else float(reply)


def test_grpc_call_timeout_is_the_smaller_of_its_own_and_the_deadline(
        grpc_channel: tuple[grpc.Channel, _Budgets]) -> None:
    channel, _ = grpc_channel
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.T/Budget")
    left = _left(call(b"", timeout=5))  # no deadline: its own timeout
    assert left is not None and 2 < left <= 5
    assert _left(call(b"")) is None  # neither: none on the wire
    # gRPC core rounds the timeout up when it writes grpc-timeout: a few ms of slack.
    with resilience.deadline(0.5):
        left = _left(call(b"", timeout=10))
    assert left is not None and 0 < left <= 0.52
    with resilience.deadline(5):
        left = _left(call(b"", timeout=0.4))
    assert left is not None and left <= 0.42
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream("/t.T/Stream")
    with resilience.deadline(0.5):
        lefts = [_left(r) for r in stream(b"")]
    assert len(lefts) == 3 and all(x is not None and x <= 0.52 for x in lefts)


def test_grpc_sends_nothing_once_the_budget_is_spent(
        grpc_channel: tuple[grpc.Channel, _Budgets]) -> None:
    channel, budgets = grpc_channel
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.T/Budget")
    before = budgets.calls
    with resilience.deadline(0), pytest.raises(DeadlineExceededError, match="nothing sent"):
        call(b"", timeout=10)
    assert budgets.calls == before


async def test_grpc_aio_interceptor_bounds_calls_and_sends_nothing_when_spent(
        grpc_server: tuple[int, _Budgets]) -> None:
    port, budgets = grpc_server
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=[AsyncDeadlineInterceptor()]) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.T/Budget")
        with resilience.deadline(0.5):
            left = _left(await call(b"", timeout=10))
        assert left is not None and 0 < left <= 0.52
        assert _left(await call(b"")) is None
        before = budgets.calls
        with resilience.deadline(0), pytest.raises(DeadlineExceededError):
            await call(b"", timeout=10)
        assert budgets.calls == before
