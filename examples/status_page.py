"""A WSGI service with the status page mounted at /resilience: freeze one of its two
memcached nodes, and the page (and `resilience status --url`) shows that node's breaker
OPEN while the other stays CLOSED.

Run: .venv/bin/python examples/status_page.py [--serve]   (needs the memcached binary)
With --serve it keeps serving for 60 s: open the printed URL in a browser.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from resilience.cli import main as resilience_command
from resilience.clients.memcache import Memcache
from resilience.errors import ResilienceError
from resilience.servers.memcached import cluster
from resilience.status.wsgi import wsgi_app


class ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log
        pass


def make_app(cache: Memcache) -> Any:
    status = wsgi_app(refresh=1.0)  # read-only: RESILIENCE_STATUS_TOKEN is not set

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/resilience"):  # what a dispatcher does for a mounted app
            environ = {**environ, "SCRIPT_NAME": "/resilience", "PATH_INFO": path[11:]}
            return status(environ, start_response)
        with contextlib.suppress(ResilienceError):  # the service's own work
            cache.get_many([f"user:{i}" for i in range(8)])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    return app


def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = cluster(Path(tmp), 2).start()
        cache = Memcache(nodes.addresses, timeout=0.05, environ={})
        server = make_server("127.0.0.1", 0, make_app(cache), server_class=ThreadedServer,
                             handler_class=QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/resilience/"
        try:
            frozen = nodes.members[0]
            frozen.freeze()
            for i in range(30):  # the service's traffic: the frozen node's breaker opens
                with contextlib.suppress(ResilienceError):
                    cache.get(f"user:{i}")
            resilience_command(["status", "--url", url])
            if "--serve" in sys.argv:
                print(f"serving {url} for 60 s")
                time.sleep(60)
            frozen.thaw()
        finally:
            server.shutdown()
            cache.close()
            nodes.stop()


if __name__ == "__main__":
    run()
