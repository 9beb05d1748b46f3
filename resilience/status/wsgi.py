"""The status app as a WSGI application, to mount in any WSGI service.

::

    from resilience.status.wsgi import wsgi_app
    status = wsgi_app(refresh=2.0)          # read-only unless a token is configured
    # e.g. with werkzeug: DispatcherMiddleware(app, {"/resilience": status})

Mounted under a prefix, the app reads its own path from ``PATH_INFO`` and its mount
point from ``SCRIPT_NAME``, as the WSGI spec (PEP 3333) has dispatchers set them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from resilience.status._app import MAX_BODY, StatusApp, _error, reason

__all__ = ["WSGIStatus", "wsgi_app"]

StartResponse = Callable[..., Any]


class WSGIStatus:
    """A WSGI callable over a `StatusApp` (``.status``)."""

    def __init__(self, status: StatusApp) -> None:
        self.status = status

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items()
                   if k.startswith("HTTP_")}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            code, out, body = _error(413, f"body of {environ.get('CONTENT_LENGTH')!r} bytes:"
                                          f" expected at most {MAX_BODY}")
        else:
            data = environ["wsgi.input"].read(length) if length else b""
            code, out, body = self.status.handle(
                method, environ.get("PATH_INFO", ""), headers, data,
                prefix=environ.get("SCRIPT_NAME", ""),
                remote=str(environ.get("REMOTE_ADDR", "?")))
        start_response(f"{code} {reason(code)}",
                       [*out, ("Content-Length", str(len(body)))])
        return [b"" if method == "HEAD" else body]


def wsgi_app(status: StatusApp | None = None, **kwargs: Any) -> WSGIStatus:
    """A WSGI app over ``status``, or over ``StatusApp(**kwargs)`` (same arguments)."""
    return WSGIStatus(status if status is not None else StatusApp(**kwargs))
