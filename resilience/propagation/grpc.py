"""A grpcio client interceptor that bounds every call by the ambient deadline.

::

    channel = grpc.intercept_channel(grpc.insecure_channel(addr), DeadlineInterceptor())
    with resilience.deadline(0.3):
        stub(request, timeout=5)   # sent with timeout=min(5, ~0.3): grpc-timeout on the wire

With a deadline in force, each call (unary or streaming, either side) is sent with
``timeout=min(its own timeout, remaining)``, so gRPC puts the budget in ``grpc-timeout``
and the server sees it; when less than 1 ms is left the call raises
`DeadlineExceededError` and nothing is sent. A call that then runs out fails the gRPC
way, ``grpc.RpcError`` with ``StatusCode.DEADLINE_EXCEEDED``. Without a deadline the
call goes through unchanged.

`AsyncDeadlineInterceptor` does the same for ``grpc.aio`` channels
(``grpc.aio.insecure_channel(addr, interceptors=[AsyncDeadlineInterceptor()])``).

gRPC core rounds the timeout up slightly when it writes ``grpc-timeout`` (a server was
seen to get 0.5006 s of a 0.5 s budget); the receiving side's reply margin covers it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc
import grpc.aio

from resilience.propagation._outbound import outbound_budget

__all__ = ["AsyncDeadlineInterceptor", "DeadlineInterceptor"]


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _CallDetails(_Details, grpc.ClientCallDetails):
    """grpc.ClientCallDetails is an interface without a constructor: this is one."""


def _bounded(details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
    budget = outbound_budget("grpc", None, details.method)
    if budget is None:
        return details
    left = budget[0]
    timeout = left if details.timeout is None else min(details.timeout, left)
    return _CallDetails(details.method, timeout, details.metadata, details.credentials,
                        getattr(details, "wait_for_ready", None),
                        getattr(details, "compression", None))


class DeadlineInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Intercepts all four call shapes; install with ``grpc.intercept_channel``."""

    def intercept_unary_unary(self, continuation: Callable[..., Any],
                              client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(_bounded(client_call_details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any],
                               client_call_details: grpc.ClientCallDetails,
                               request: Any) -> Any:
        return continuation(_bounded(client_call_details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any],
                               client_call_details: grpc.ClientCallDetails,
                               request_iterator: Iterator[Any]) -> Any:
        return continuation(_bounded(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any],
                                client_call_details: grpc.ClientCallDetails,
                                request_iterator: Iterator[Any]) -> Any:
        return continuation(_bounded(client_call_details), request_iterator)


def _bounded_aio(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    method = details.method
    name = method.decode() if isinstance(method, bytes) else str(method)
    budget = outbound_budget("grpc", None, name)
    if budget is None:
        return details
    left = budget[0]
    timeout = left if details.timeout is None else min(details.timeout, left)
    return grpc.aio.ClientCallDetails(method, timeout, details.metadata,
                                      details.credentials, details.wait_for_ready)


class AsyncDeadlineInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """The ``grpc.aio`` twin of `DeadlineInterceptor`; pass it in ``interceptors=``."""

    async def intercept_unary_unary(self, continuation: Callable[..., Any],
                                    client_call_details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(_bounded_aio(client_call_details), request)

    async def intercept_unary_stream(self, continuation: Callable[..., Any],
                                     client_call_details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(_bounded_aio(client_call_details), request)

    async def intercept_stream_unary(self, continuation: Callable[..., Any],
                                     client_call_details: grpc.aio.ClientCallDetails,
                                     request_iterator: Any) -> Any:
        return await continuation(_bounded_aio(client_call_details), request_iterator)

    async def intercept_stream_stream(self, continuation: Callable[..., Any],
                                      client_call_details: grpc.aio.ClientCallDetails,
                                      request_iterator: Any) -> Any:
        return await continuation(_bounded_aio(client_call_details), request_iterator)
