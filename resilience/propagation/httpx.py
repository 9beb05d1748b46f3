"""httpx transports (sync and async) that carry the ambient deadline to the server.

::

    client = httpx.Client(transport=DeadlineTransport())
    aclient = httpx.AsyncClient(transport=AsyncDeadlineTransport())
    with resilience.deadline(0.3):
        client.get("http://inventory/items")   # sends request-timeout-ms: 299

With a deadline in force, each request:

- is refused with `DeadlineExceededError` before anything is sent when less than 1 ms
  is left;
- carries the remaining budget in whole milliseconds (rounded down) in ``header``
  (``request-timeout-ms`` unless given; a smaller value already on the request stays);
- has its connect, read, write and pool timeouts clamped to the remaining budget;
- raises `DeadlineExceededError` (the httpx error as its cause) when a timeout fires
  after the deadline passed, and when the response body is read past the deadline.

Without a deadline the request goes through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from resilience.propagation._headers import DEFAULT_HEADER
from resilience.propagation._outbound import check_spent, header_value, outbound_budget

__all__ = ["AsyncDeadlineTransport", "DeadlineTransport"]

_TIMEOUTS = ("connect", "read", "write", "pool")


def _prepare(request: httpx.Request, header: str) -> float | None:
    """Set the header and clamp the timeouts; the deadline instant, or None."""
    budget = outbound_budget("http", request.url.netloc.decode("ascii"), request.method)
    if budget is None:
        return None
    left, at = budget
    request.headers[header] = header_value(left, request.headers.get(header))
    timeouts = dict(request.extensions.get("timeout", {}))
    for key in _TIMEOUTS:
        given = timeouts.get(key)
        timeouts[key] = left if given is None else min(given, left)
    request.extensions["timeout"] = timeouts
    return at


class DeadlineTransport(httpx.BaseTransport):
    """A sync httpx transport sending the ambient deadline; wraps ``transport``.

    Args:
        transport: the transport doing the I/O (default: ``httpx.HTTPTransport()``).
        header: the budget header to send, whole milliseconds.
    """

    def __init__(self, transport: httpx.BaseTransport | None = None, *,
                 header: str = DEFAULT_HEADER) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self._header = header

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        at = _prepare(request, self._header)
        if at is None:
            return self._transport.handle_request(request)
        endpoint = request.url.netloc.decode("ascii")
        try:
            response = self._transport.handle_request(request)
        except httpx.TimeoutException as exc:
            check_spent(at, "http", endpoint, request.method, exc)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # a sync transport's response

        def chunks() -> Iterator[bytes]:
            try:
                for chunk in stream:
                    yield chunk
                    check_spent(at, "http", endpoint, request.method)
            except httpx.TimeoutException as exc:
                check_spent(at, "http", endpoint, request.method, exc)
                raise

        response.stream = _SyncStream(chunks(), stream)
        return response

    def close(self) -> None:
        self._transport.close()


class AsyncDeadlineTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of `DeadlineTransport`; wraps ``transport``
    (default: ``httpx.AsyncHTTPTransport()``)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *,
                 header: str = DEFAULT_HEADER) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._header = header

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = _prepare(request, self._header)
        if at is None:
            return await self._transport.handle_async_request(request)
        endpoint = request.url.netloc.decode("ascii")
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException as exc:
            check_spent(at, "http", endpoint, request.method, exc)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an async transport's response

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream:
                    yield chunk
                    check_spent(at, "http", endpoint, request.method)
            except httpx.TimeoutException as exc:
                check_spent(at, "http", endpoint, request.method, exc)
                raise

        response.stream = _AsyncStream(chunks(), stream)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes], inner: httpx.SyncByteStream) -> None:
        self._chunks, self._inner = chunks, inner

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._inner.close()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes], inner: httpx.AsyncByteStream) -> None:
        self._chunks, self._inner = chunks, inner

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def aclose(self) -> None:
        await self._inner.aclose()
