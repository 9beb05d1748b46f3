"""WSGI middleware: run each request under the budget its caller sent.

::

    from resilience.propagation.wsgi import DeadlineMiddleware
    app = DeadlineMiddleware(app, max_budget=2.0)

For each request it reads the caller's budget (`resilience.propagation._headers`: the
smallest of ``request-timeout-ms``, ``connect-timeout-ms``,
``x-envoy-expected-rq-timeout-ms`` and, for gRPC content, ``grpc-timeout``), caps it at
the route's maximum, keeps ``reply_margin`` back and calls the application inside
``resilience.deadline(...)``: every guarded call the request makes, and every outbound
call through the transports of this package, gets what is left of it.

- A malformed header is ignored and counted (``stats.malformed``), never a 500.
- A budget already spent on arrival is answered 504 at once, with the header
  ``resilience-deadline: expired``; the application is not called.
- `DeadlineExceededError` from the application -> 504 (``resilience-deadline:
  exceeded``); `CircuitOpenError` -> 503 with ``Retry-After`` (whole seconds, >= 1).
  These are mapped when raised by the application call; an error raised while the
  server iterates the response body propagates (headers may already be sent).

WSGI cannot interrupt a running thread: the deadline bounds what the request does
through guarded and propagated calls, not plain blocking code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from resilience.core.deadline import DEADLINE, deadline
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

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_REASONS = {503: "503 Service Unavailable", 504: "504 Gateway Timeout"}


class DeadlineMiddleware:
    """Wrap a WSGI application so each request runs under its caller's budget.

    Args:
        app: the WSGI application.
        max_budget: the longest any request may run, seconds (None: no cap; a request
            without a budget header then runs with no deadline).
        route_max: ``route_max(environ)`` -> a route's own maximum in seconds, or None
            for ``max_budget``; lets ``/report`` have 10 s while the rest has 1 s. Any
            other return value (not a finite number > 0) raises ConfigError.
        header: this service's own budget header, whole milliseconds.
        reply_margin: seconds kept back from the budget to write the reply.

    Attributes:
        stats: `PropagationStats` of this middleware.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        max_budget: float | None = 30.0,
        route_max: Callable[[dict[str, Any]], float | None] | None = None,
        header: str = DEFAULT_HEADER,
        reply_margin: float = 0.005,
    ) -> None:
        self.app = app
        self.inbound = Inbound(max_budget, header, reply_margin)
        self.route_max = route_max
        self.stats = PropagationStats()
        # The environ keys of the headers read: looked up directly, not by scanning it.
        self._keys = tuple(
            ("HTTP_" + name.upper().replace("-", "_"), name)
            for name in (header.lower(), CONNECT_HEADER, ENVOY_HEADER, GRPC_HEADER))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.stats.add("requests")
        grpc = str(environ.get("CONTENT_TYPE", "")).startswith("application/grpc")
        route_max = self.route_max(environ) if self.route_max is not None else None
        headers = [(name, environ[key]) for key, name in self._keys if key in environ]
        seconds = self.inbound.decide(headers, grpc, route_max, self.stats)
        if seconds is None:
            return self.app(environ, start_response)
        if seconds <= 0:
            self.stats.add("expired")
            return _reply(start_response, 504, [(MARKER_HEADER, "expired")], None)
        with deadline(seconds) as scope:
            try:
                body = self.app(environ, start_response)
            except Exception as exc:
                mapped = error_response(exc, self.stats)
                if mapped is None:
                    raise
                return _reply(start_response, *mapped, sys.exc_info())  # type: ignore[arg-type]
        if isinstance(body, list | tuple):
            return body  # already produced, under the deadline: nothing left to run
        return _Body(body, scope.at)


def _reply(
    start_response: StartResponse, status: int, headers: list[tuple[str, str]],
    exc_info: _ExcInfo | None,
) -> list[bytes]:
    body = _REASONS[status].encode() + b"\n"
    all_headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                   *headers]
    # With exc_info, PEP 3333 lets us replace headers not yet sent (and re-raises if
    # they were): the application may have called start_response before failing.
    start_response(_REASONS[status], all_headers, exc_info)
    return [body]


class _Body:
    """The application's response iterable, each chunk produced under the deadline."""

    def __init__(self, body: Iterable[bytes], at: float) -> None:
        self._body = body
        self._iter: Iterator[bytes] | None = None
        self._at = at

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        token = DEADLINE.set(self._at)  # the server iterates outside our `with` block
        try:
            if self._iter is None:
                self._iter = iter(self._body)
            return next(self._iter)
        finally:
            DEADLINE.reset(token)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
