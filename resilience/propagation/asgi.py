"""ASGI middleware: run each HTTP request under the budget its caller sent.

::

    from resilience.propagation.asgi import DeadlineMiddleware
    app = DeadlineMiddleware(app, max_budget=2.0)

The budget is decided exactly as by the WSGI middleware (`resilience.propagation.wsgi`
says how), and the application runs inside ``async with resilience.deadline(...)``: its
guarded calls get what is left, and its plain awaits are cancelled when the time is up.

- A malformed header is ignored and counted (``stats.malformed``), never a 500.
- A budget spent on arrival is answered 504 (``resilience-deadline: expired``) before
  the application is called.
- `DeadlineExceededError` (including the cancellation at the deadline) -> 504
  (``resilience-deadline: exceeded``); `CircuitOpenError` -> 503 with ``Retry-After``;
  both only while the response has not started; after that the error propagates and
  the server ends the connection.

Lifespan and websocket scopes pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from resilience.core.deadline import deadline
from resilience.propagation._headers import (
    CONNECT_HEADER,
    DEFAULT_HEADER,
    ENVOY_HEADER,
    GRPC_HEADER,
)
from resilience.propagation._inbound import (
    MARKER_HEADER,
    Inbound,
    PropagationStats,
    error_response,
)

__all__ = ["DeadlineMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DeadlineMiddleware:
    """Wrap an ASGI application so each HTTP request runs under its caller's budget.

    Args:
        app: the ASGI application.
        max_budget: the longest any request may run, seconds (None: no cap; a request
            without a budget header then runs with no deadline).
        route_max: ``route_max(scope)`` -> a route's own maximum in seconds, or None for
            ``max_budget``; any other return value (not a finite number > 0) raises
            ConfigError.
        header: this service's own budget header, whole milliseconds.
        reply_margin: seconds kept back from the budget to write the reply.

    Attributes:
        stats: `PropagationStats` of this middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_budget: float | None = 30.0,
        route_max: Callable[[Scope], float | None] | None = None,
        header: str = DEFAULT_HEADER,
        reply_margin: float = 0.005,
    ) -> None:
        self.app = app
        self.inbound = Inbound(max_budget, header, reply_margin)
        self.route_max = route_max
        self.stats = PropagationStats()
        self._names = frozenset(
            name.encode("latin-1") for name in
            (header.lower(), CONNECT_HEADER, ENVOY_HEADER, GRPC_HEADER, "content-type"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.stats.add("requests")
        # Pick ours without decoding the rest (names are lower case in ASGI; a server
        # that does not lower them is still read right).
        wanted = self._names
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                   for k, v in scope["headers"] if k.lower() in wanted]
        grpc = any(k == "content-type" and v.startswith("application/grpc")
                   for k, v in headers)
        route_max = self.route_max(scope) if self.route_max is not None else None
        seconds = self.inbound.decide(headers, grpc, route_max, self.stats)
        if seconds is None:
            await self.app(scope, receive, send)
            return
        if seconds <= 0:
            self.stats.add("expired")
            await _reply(send, 504, [(MARKER_HEADER, "expired")])
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with deadline(seconds):
                await self.app(scope, receive, tracking_send)
        except Exception as exc:
            mapped = None if started else error_response(exc, self.stats)
            if mapped is None:
                raise
            await _reply(send, *mapped)


async def _reply(send: Send, status: int, headers: list[tuple[str, str]]) -> None:
    body = b"Gateway Timeout\n" if status == 504 else b"Service Unavailable\n"
    raw = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()),
           *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
