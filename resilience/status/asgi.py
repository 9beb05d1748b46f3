"""The status app as an ASGI application, to mount in any ASGI service.

::

    from resilience.status.asgi import asgi_app
    status = asgi_app(refresh=2.0)          # read-only unless a token is configured
    # e.g. with Starlette: Mount("/resilience", app=status); or alone: uvicorn.run(status)

Mounted under a prefix, the app takes its mount point from ``root_path`` (and strips it
from ``path`` when the server or router left it there). It answers ``lifespan`` so it
can also run alone. Collecting takes a few short locks and no I/O, so it runs on the
event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from resilience.status._app import MAX_BODY, StatusApp, _error

__all__ = ["ASGIStatus", "asgi_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ASGIStatus:
    """An ASGI (3.0) callable over a `StatusApp` (``.status``)."""

    def __init__(self, status: StatusApp) -> None:
        self.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif kind == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"status app: ASGI scope type {scope['type']!r} is not served")
        root = scope.get("root_path", "")
        path = scope["path"]
        if root and path.startswith(root):
            path = path[len(root):]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        body, too_big = b"", False
        more = True
        while more:  # bounded: at most MAX_BODY bytes are kept
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                too_big = True
                break
        client = scope.get("client")
        if too_big:
            code, out, payload = _error(413, f"body over {MAX_BODY} bytes")
        else:
            code, out, payload = self.status.handle(
                scope["method"], path, headers, body, prefix=root,
                remote=str(client[0]) if client else "?")
        await send({"type": "http.response.start", "status": code,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in
                                [*out, ("Content-Length", str(len(payload)))]]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else payload})


def asgi_app(status: StatusApp | None = None, **kwargs: Any) -> ASGIStatus:
    """An ASGI app over ``status``, or over ``StatusApp(**kwargs)`` (same arguments)."""
    return ASGIStatus(status if status is not None else StatusApp(**kwargs))
