"""The memcached plugin of the benchmark: pymemcache raw (defaults, tuned) and wrapped.

Subjects make one ``get`` per call. ``raw-default`` is ``pymemcache.Client(server)``
exactly as its docs show it (no timeouts at all); ``raw-tuned`` sets ``connect_timeout``
and ``timeout`` to the same budget the wrapper gets, the best pymemcache offers; the
wrapper is :class:`resilience.clients.memcache.Memcache` with that budget and its
default breaker and retry settings.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilience.bench.model import OverheadRow
from resilience.bench.plugin import RunningServer, Subject

__all__ = ["PLUGIN", "MemcachedBench"]

KEY = "bench:key"
VALUE = b"v" * 64  # stored under KEY at start: a hit, long enough for the slow drip to show


def _tracking_module(registry: list[socket.socket]) -> types.ModuleType:
    """A copy of :mod:`socket` whose sockets register themselves in ``registry`` (at
    creation only: a raw call pays nothing per call), so a hung raw call can be woken."""

    class _Tracked(socket.socket):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            registry.append(self)

    cls = _Tracked
    module = types.ModuleType("bench_tracked_socket")
    module.__dict__.update(socket.__dict__)
    module.socket = cls  # type: ignore[attr-defined]
    return module


def candidate_keys(target: int, count: int = 64) -> list[str]:
    """Keys a subject may read for node ``target``; stored on that node only, so a client
    that silently moves a dead node's keys elsewhere reads misses, as it would in life."""
    return [f"bench:t{target}:{i}" for i in range(count)]


def _pick(keys: Sequence[str], owns: Callable[[str], bool]) -> str:
    for key in keys:
        if owns(key):
            return key
    raise RuntimeError("no candidate key maps to the target node")


class RawSubject:
    """pymemcache with its defaults (``budget`` None) or tuned timeouts: ``Client`` for
    one node, ``HashClient`` (its own multi-node client) for several."""

    def __init__(self, name: str, nodes: Sequence[tuple[str, int]], budget: float | None,
                 target: int) -> None:
        from pymemcache.client.base import Client
        from pymemcache.client.hash import HashClient

        self.name = name
        self._sockets: list[socket.socket] = []
        kwargs: dict[str, Any] = {"socket_module": _tracking_module(self._sockets)}
        if budget is not None:
            kwargs.update(connect_timeout=budget, timeout=budget)
        keys = candidate_keys(target)
        self._client: Any
        if len(nodes) == 1:
            self._client = Client(nodes[0], **kwargs)
            self._key = keys[0]
        else:
            self._client = HashClient(list(nodes), **kwargs)
            host, port = nodes[target]
            owner = f"{host}:{port}"  # HashClient's own node key format
            self._key = _pick(keys, lambda k: bool(self._client.hasher.get_node(k) == owner))

    def call(self) -> object:
        return self._client.get(self._key)

    def abort(self) -> None:
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):  # not connected, or closed already
                sock.shutdown(socket.SHUT_RDWR)

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        self.abort()
        self._client.close()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()


class WrapperSubject:
    """The resilience wrapper with ``budget`` as timeout and connect cap."""

    def __init__(self, nodes: Sequence[tuple[str, int]], budget: float, target: int) -> None:
        from resilience.clients.memcache import Memcache
        from resilience.core.breaker import BreakerState

        self.name = "wrapper"
        endpoints = [f"{h}:{p}" for h, p in nodes]
        self._endpoint = endpoints[target]
        self._cache = Memcache(endpoints, timeout=budget, connect_timeout=budget, environ={})
        self._key = _pick(candidate_keys(target),
                          lambda k: self._cache.node_for(k) == self._endpoint)
        self._open_states = (BreakerState.OPEN, BreakerState.FORCED_OPEN)

    def call(self) -> object:
        return self._cache.get(self._key)

    def abort(self) -> None:
        self._cache.close()

    def breaker_open(self) -> bool:
        return self._cache.breaker(self._endpoint).state(time.monotonic()) in self._open_states

    def close(self) -> None:
        self._cache.close()


class MemcachedBench:
    """The :class:`~resilience.bench.plugin.Datastore` for memcached."""

    name = "memcached"

    def start_server(
        self,
        work_dir: str,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
        targets: Sequence[int] = (0,),
    ) -> RunningServer:
        from resilience.servers.memcached import Memcached

        server = Memcached(Path(work_dir), name="memcached-bench", host=host, netns=netns)
        server.start(timeout=15.0)
        try:
            _store(server.host, server.port,
                   [KEY, *(k for t in targets for k in candidate_keys(t))])
        except BaseException:
            server.stop()
            raise
        return server

    def subject(self, kind: str, nodes: Sequence[tuple[str, int]], budget: float,
                target: int = 0) -> Subject:
        if kind == "raw-default":
            return RawSubject(kind, nodes, None, target)
        if kind == "raw-tuned":
            return RawSubject(kind, nodes, budget, target)
        if kind == "wrapper":
            return WrapperSubject(nodes, budget, target)
        raise ValueError(f"unknown subject {kind!r}")

    def overhead(self, host: str, port: int, calls: int) -> list[OverheadRow]:
        return _overhead(host, port, calls)


def _store(host: str, port: int, keys: list[str]) -> None:
    """Store VALUE under ``keys`` on one node with a raw, bounded socket."""
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.settimeout(2.0)
        sock.sendall(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k.encode(), len(VALUE), VALUE)
                              for k in keys))
        replies = b""
        while replies.count(b"\r\n") < len(keys):
            chunk = sock.recv(4096)
            if not chunk:
                break
            replies += chunk
        if replies.count(b"STORED\r\n") != len(keys):
            raise RuntimeError(f"{host}:{port}: could not store the benchmark keys")


def _peers(host: str, port: int) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Subject -> (get, set) callables doing the same healthy call."""
    import pybreaker
    import tenacity
    from pymemcache.client.base import Client

    from resilience.clients.memcache import Memcache

    raw = Client((host, port), connect_timeout=1.0, timeout=1.0, no_delay=True,
                 default_noreply=False)
    cache = Memcache([f"{host}:{port}"], timeout=1.0, connect_timeout=1.0, environ={})
    pyb_client = Client((host, port), connect_timeout=1.0, timeout=1.0, no_delay=True,
                        default_noreply=False)
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
    ten_client = Client((host, port), connect_timeout=1.0, timeout=1.0, no_delay=True,
                        default_noreply=False)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(2),
        wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.2),
        reraise=True,
    )
    value = b"x" * 32
    return {
        "raw pymemcache": (lambda: raw.get(KEY), lambda: raw.set(KEY, value, noreply=False)),
        "wrapper": (lambda: cache.get(KEY), lambda: cache.set(KEY, value)),
        "pybreaker + pymemcache": (
            lambda: breaker.call(pyb_client.get, KEY),
            lambda: breaker.call(pyb_client.set, KEY, value, noreply=False),
        ),
        "tenacity + pymemcache": (
            lambda: retrying(ten_client.get, KEY),
            lambda: retrying(ten_client.set, KEY, value, noreply=False),
        ),
    }


def _overhead(host: str, port: int, calls: int, rounds: int = 7) -> list[OverheadRow]:
    """Interleaved rounds of ``calls`` calls per subject: median wall µs per call, and
    median CPU µs per call (this process's CPU time: the client-side cost alone, which
    does not depend on how long memcached takes to wake up and answer)."""
    peers = _peers(host, port)
    rows: list[OverheadRow] = []
    for op_index, op in enumerate(("get", "set")):
        wall: dict[str, list[float]] = {name: [] for name in peers}
        cpu: dict[str, list[float]] = {name: [] for name in peers}
        for fns in peers.values():  # warm up: connect, fill caches
            for _ in range(200):
                fns[op_index]()
        for _ in range(rounds):
            for name, fns in peers.items():
                fn = fns[op_index]
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    fn()
                wall[name].append((time.perf_counter() - start) / calls * 1e6)
                cpu[name].append((time.process_time() - start_cpu) / calls * 1e6)
        base = statistics.median(wall["raw pymemcache"])
        base_cpu = statistics.median(cpu["raw pymemcache"])
        for name, values in wall.items():
            med, med_cpu = statistics.median(values), statistics.median(cpu[name])
            rows.append(OverheadRow("memcached", op, name, med, min(values), max(values),
                                    med / base, med_cpu, med_cpu - base_cpu))
    return rows


PLUGIN = MemcachedBench()
