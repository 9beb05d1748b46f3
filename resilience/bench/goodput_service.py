"""The service under test of ``resilience bench goodput``: one HTTP endpoint that reads
a datastore and falls back to a default value when the read fails.

It runs as its own process, one per subject, so a subject whose threads hang cannot
slow the others' interpreters, and is killed at the end of its run::

    python -m resilience.bench.goodput_service --mode sync --subject wrapper \\
        --datastore memcached --address 127.0.0.1:11211 --key bench:key

It prints ``port N`` on stdout once it listens and serves until killed.

* ``--mode sync``: a WSGI app on wsgiref's server with a fixed pool of 16 worker
  threads (``THREADS``), the usual shape of a threaded Python service.
* ``--mode async``: the same endpoint on a minimal asyncio HTTP/1.0 server.

Every response is ``200`` with ``X-Source: hit`` (the value came from memcached),
``miss`` (the datastore answered without it) or ``fallback`` (the read failed and the
endpoint served its default), so the load generator can tell a hit from a degraded
answer. The subjects differ only in how the endpoint reads
(:mod:`resilience.bench.goodput_readers`); the ``fallback`` subject is the control: it
never reads and serves the fallback on every request, through the same ``except`` path.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from resilience.bench.goodput_readers import DATASTORES, SUBJECTS, async_reader, sync_reader

__all__ = ["THREADS", "main"]

THREADS = 16  # worker threads of the sync service
FALLBACK = b"fallback value"


def _response(value: bytes | None, source: str) -> tuple[bytes, list[tuple[str, str]]]:
    body = value if value is not None else FALLBACK
    return body, [("Content-Type", "application/octet-stream"),
                  ("Content-Length", str(len(body))), ("X-Source", source)]


def wsgi_app(read: Callable[[str], bytes | None], key: str) -> Callable[..., Iterable[bytes]]:
    """The endpoint as a WSGI app: read ``key``, or serve the fallback."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            value = read(key)
            source = "hit" if value is not None else "miss"
        except Exception:  # any failure of the read: serve the fallback, as services do
            value, source = None, "fallback"
        body, headers = _response(value, source)
        start_response("200 OK", headers)
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would cost more than the request


class PoolWSGIServer(WSGIServer):
    """wsgiref's server with a fixed pool of ``THREADS`` workers: the accept loop hands
    each connection to the pool (its queue is unbounded, as in a naive service, so
    requests queue up behind hung workers)."""

    request_queue_size = 128

    def __init__(self, address: tuple[str, int], threads: int = THREADS) -> None:
        super().__init__(address, _QuietHandler)
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="web")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a client that gave up and closed: nothing to tell anyone
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def serve_sync(datastore: str, subject: str, address: str, key: str) -> None:
    server = PoolWSGIServer(("127.0.0.1", 0))
    server.set_app(wsgi_app(sync_reader(datastore, subject, address), key))
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.2)


async def serve_async(datastore: str, subject: str, address: str, key: str) -> None:
    read = async_reader(datastore, subject, address)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Bounded: a client that never finishes its request does not hold a task.
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            try:
                value = await read(key)
                source = "hit" if value is not None else "miss"
            except Exception:  # any failure of the read: serve the fallback
                value, source = None, "fallback"
            body, headers = _response(value, source)
            head = "HTTP/1.0 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            writer.write(head.encode() + b"\r\n" + body)
            await asyncio.wait_for(writer.drain(), 5.0)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError):
            pass  # the client gave up first
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.bench.goodput_service")
    parser.add_argument("--mode", choices=("sync", "async"), required=True)
    parser.add_argument("--subject", choices=SUBJECTS, required=True)
    parser.add_argument("--datastore", choices=DATASTORES, required=True)
    parser.add_argument("--address", required=True, help="host:port of the datastore")
    parser.add_argument("--key", required=True, help="memcached key or ZooKeeper node")
    args = parser.parse_args(argv)
    if args.mode == "sync":
        serve_sync(args.datastore, args.subject, args.address, args.key)
    else:
        asyncio.run(serve_async(args.datastore, args.subject, args.address, args.key))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
