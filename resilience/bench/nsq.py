"""The NSQ plugins of the benchmark: publishing one message per call.

Two datastores, because a fault acts on one port: ``nsq`` (nsqd's TCP port) and
``nsq-http`` (its HTTP port).

- ``nsq``: ``raw-default`` is pynsq's ``Writer`` with its defaults on its own tornado
  loop thread, the call waiting for the publish callback with no bound (a publish whose
  callback never comes shows as a hang: no acknowledgement within the cap);
  ``raw-tuned`` is the same Writer with the wait bounded by the budget (the best pynsq
  offers: its connect timeout is dead code, ``pub`` has none); the wrapper is
  :class:`resilience.clients.nsq.Publisher` (TCP) with the budget.
- ``nsq-http``: ``raw-default`` is ``urllib`` ``POST /pub`` with no timeout,
  ``raw-tuned`` with ``timeout=budget`` (per socket operation), the wrapper is the
  Publisher with ``transport="http"``.

The healthy-path rows compare a publish through each (µs per acknowledged publish,
whose inverse is publishes per second on one connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilience.bench.model import OverheadRow
from resilience.bench.plugin import RunningServer, Subject

__all__ = ["HTTP_PLUGIN", "PLUGIN", "NsqBench"]

TOPIC = "bench"
BODY = b"m" * 64


class _TornadoWriter:
    """A pynsq Writer on a tornado IOLoop thread it owns (built on that thread, as
    pynsq needs); ``pub`` waits for the callback, first result wins."""

    def __init__(self, address: str) -> None:
        import nsq

        for noisy in ("nsq", "tornado", "asyncio"):  # pynsq logs every failed connect
            logging.getLogger(noisy).setLevel(logging.CRITICAL)

        self._nsq = nsq
        ready = threading.Event()
        self._pending: dict[int, tuple[threading.Event, list[Any]]] = {}
        self.writer: Any = None

        def run() -> None:
            from tornado.ioloop import IOLoop

            asyncio.set_event_loop(asyncio.new_event_loop())
            self.io = IOLoop.current()
            self.writer = nsq.Writer([address])
            ready.set()
            self.io.start()

        self._thread = threading.Thread(target=run, name="bench-pynsq", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        # Publishes before the first connection is ready fail at once ("no open
        # connections"): wait for it (bounded), as any pynsq user has to.
        end = time.monotonic() + 2.0
        while self.writer is not None and not self.writer.conns and time.monotonic() < end:
            time.sleep(0.01)

    def pub(self, wait: float | None) -> object:
        done = threading.Event()
        box: list[Any] = []
        item = (done, box)

        def callback(conn: Any, data: Any) -> None:
            if not box:  # pynsq may call back twice (pynsq#240)
                box.append(data)
                done.set()

        self._pending[id(item)] = item
        try:
            self.io.add_callback(self.writer.pub, TOPIC, BODY, callback)
            if not done.wait(wait):
                raise TimeoutError("no acknowledgement within the budget")
        finally:
            self._pending.pop(id(item), None)
        data = box[0]
        if isinstance(data, Exception):
            raise data
        if data != b"OK":
            raise RuntimeError(f"unexpected reply {data!r}")
        return data

    def abort(self) -> None:
        for done, box in list(self._pending.values()):
            box.append(ConnectionAbortedError("aborted by the benchmark"))
            done.set()

    def close(self) -> None:
        self.abort()
        with contextlib.suppress(Exception):
            self.io.add_callback(self.io.stop)
        self._thread.join(2.0)


class PynsqSubject:
    def __init__(self, name: str, address: str, budget: float | None) -> None:
        self.name, self._budget = name, budget
        self._writer = _TornadoWriter(address)

    def call(self) -> object:
        return self._writer.pub(self._budget)

    def abort(self) -> None:
        self._writer.abort()

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        self._writer.close()


class UrllibSubject:
    def __init__(self, name: str, address: str, budget: float | None) -> None:
        self.name = name
        self._url = f"http://{address}/pub?topic={TOPIC}"
        self._budget = budget
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self) -> object:
        req = urllib.request.Request(self._url, data=BODY, method="POST")
        resp = (self._opener.open(req) if self._budget is None
                else self._opener.open(req, timeout=self._budget))
        with resp:
            body = resp.read()
        if body != b"OK":
            raise RuntimeError(f"unexpected reply {body!r}")
        return body

    def abort(self) -> None:
        pass  # a hung urllib call cannot be woken from outside; the runner moves on

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        pass


class WrapperSubject:
    def __init__(self, address: str, budget: float, transport: str) -> None:
        from resilience.clients.nsq import Publisher
        from resilience.core.breaker import BreakerState

        self.name, self._address = "wrapper", address
        self._pub = Publisher([address], transport=transport, timeout=budget,
                              connect_timeout=budget, environ={})
        self._open_states = (BreakerState.OPEN, BreakerState.FORCED_OPEN)

    def call(self) -> object:
        self._pub.publish(TOPIC, BODY)
        return b"OK"  # acknowledged (a None would read as a cache miss)

    def abort(self) -> None:
        self._pub.close()

    def breaker_open(self) -> bool:
        return self._pub.breaker(self._address).state(time.monotonic()) in self._open_states

    def close(self) -> None:
        self._pub.close()


class _HttpPort:
    """An nsqd seen through its HTTP port (what the fault sites act on)."""

    def __init__(self, server: Any) -> None:
        self._server = server

    @property
    def host(self) -> str:
        return str(self._server.host)

    @property
    def port(self) -> int:
        return int(self._server.ports["http"])

    def freeze(self) -> None:
        self._server.freeze()

    def thaw(self) -> None:
        self._server.thaw()

    def stop(self, timeout: float = 10.0) -> None:
        self._server.stop(timeout)

    def kill(self) -> None:
        self._server.kill()


class NsqBench:
    """The :class:`~resilience.bench.plugin.Datastore` for nsqd (``http``: its HTTP port)."""

    def __init__(self, http: bool) -> None:
        self.http = http
        self.name = "nsq-http" if http else "nsq"

    def start_server(self, work_dir: str, *, host: str = "127.0.0.1",
                     netns: str | None = None, targets: Sequence[int] = (0,)) -> RunningServer:
        from resilience.servers.nsq import Nsqd

        server = Nsqd(Path(work_dir), name="nsqd-bench", host=host, netns=netns)
        server.start(timeout=15.0)
        return _HttpPort(server) if self.http else server

    def subject(self, kind: str, nodes: Sequence[tuple[str, int]], budget: float,
                target: int = 0) -> Subject:
        host, port = nodes[target]
        address = f"{host}:{port}"
        if kind == "wrapper":
            return WrapperSubject(address, budget, "http" if self.http else "tcp")
        tuned = budget if kind == "raw-tuned" else None
        if kind not in ("raw-default", "raw-tuned"):
            raise ValueError(f"unknown subject {kind!r}")
        if self.http:
            return UrllibSubject(kind, address, tuned)
        return PynsqSubject(kind, address, tuned)

    def overhead(self, host: str, port: int, calls: int) -> list[OverheadRow]:
        if self.http:
            return []  # one table for both: the nsq plugin measures every transport
        return _overhead(host, port, calls)


def _overhead(host: str, tcp_port: int, calls: int, per_round: int = 50) -> list[OverheadRow]:
    """µs per acknowledged publish on a healthy nsqd, in interleaved rounds (rotated
    order). The HTTP port is the one the plugin started this nsqd with."""
    from resilience.clients.nsq import Publisher

    http_port = _http_port_of.get((host, tcp_port))
    writer = _TornadoWriter(f"{host}:{tcp_port}")
    time.sleep(0.5)  # pynsq's first connection (pubs before it fail at once)
    tcp = Publisher([f"{host}:{tcp_port}"], timeout=1.0, environ={})
    peers: dict[str, Callable[[], object]] = {
        "raw pynsq Writer": lambda: writer.pub(1.0),
        "wrapper (tcp)": lambda: tcp.publish(TOPIC, BODY),
    }
    closers: list[Callable[[], None]] = [writer.close, tcp.close]
    if http_port is not None:
        raw_http = UrllibSubject("raw urllib /pub", f"{host}:{http_port}", 1.0)
        http = Publisher([f"{host}:{http_port}"], transport="http", timeout=1.0, environ={})
        peers["raw urllib /pub"] = raw_http.call
        peers["wrapper (http)"] = lambda: http.publish(TOPIC, BODY)
        closers.append(http.close)
    try:
        for fn in peers.values():
            for _ in range(50):
                fn()
        names = list(peers)
        per: dict[str, list[float]] = {n: [] for n in names}
        rounds = max(5, calls // per_round)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                for _ in range(per_round):
                    peers[name]()
                per[name].append((time.perf_counter() - start) / per_round * 1e6)
        base = per["raw pynsq Writer"]
        return [OverheadRow("nsq", "publish", name, statistics.median(per[name]),
                            min(per[name]), max(per[name]),
                            statistics.median(v / b for v, b in zip(per[name], base, strict=True)))
                for name in names]
    finally:
        for close in closers:
            close()


_http_port_of: dict[tuple[str, int], int] = {}


class _NsqBenchTcp(NsqBench):
    def start_server(self, work_dir: str, *, host: str = "127.0.0.1",
                     netns: str | None = None, targets: Sequence[int] = (0,)) -> RunningServer:
        server: Any = super().start_server(work_dir, host=host, netns=netns, targets=targets)
        _http_port_of[(server.host, server.port)] = int(server.ports["http"])
        return server  # type: ignore[no-any-return]


PLUGIN = _NsqBenchTcp(http=False)
HTTP_PLUGIN = NsqBench(http=True)
