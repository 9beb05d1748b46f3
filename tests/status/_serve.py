"""A real threaded WSGI service on loopback for the status tests: ``/get`` reads a key
through a memcached client, the status app is mounted at ``/resilience``."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from resilience.errors import ResilienceError

MOUNT = "/resilience"
App = Callable[[dict[str, Any], Callable[..., Any]], Any]


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def service(status: App, cache: Any = None) -> App:
    """The service: ``/get`` (200 with the value, 503 when the cache call failed) and
    ``status`` mounted at MOUNT (SCRIPT_NAME/PATH_INFO set as a WSGI dispatcher does)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == MOUNT or path.startswith(MOUNT + "/"):
            environ = {**environ, "SCRIPT_NAME": MOUNT, "PATH_INFO": path[len(MOUNT):]}
            return status(environ, start_response)
        if path == "/get" and cache is not None:
            try:
                value = cache.get("k")
                code, body = "200 OK", repr(value).encode()
            except ResilienceError as exc:
                code, body = "503 Service Unavailable", type(exc).__name__.encode()
            start_response(code, [("Content-Type", "text/plain")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return app


@contextlib.contextmanager
def serving(app: App) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(url: str, *, method: str = "GET", body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request (5 s bound): status, headers, body; HTTP errors are returned."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
