"""The memcached plugin of the benchmark: pymemcache raw (defaults, tuned) and wrapped.

Subjects make one ``get`` per call. ``raw-default`` is ``pymemcache.Client(server)``
exactly as its docs show it (no timeouts at all); ``raw-tuned`` sets ``connect_timeout``
and ``timeout`` to the same budget the wrapper gets, the best pymemcache offers; the
wrapper is :class:`resilience.clients.memcache.Memcache` with that budget and its
default breaker and retry settings.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilience.bench.model import OverheadRow
from resilience.bench.overhead import interleave
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

        # One worker thread: every subject's connection is served by the same thread,
        # so the healthy-path comparison does not depend on which thread (and vCPU) a
        # connection happened to land on (see _overhead).
        server = Memcached(Path(work_dir), name="memcached-bench", host=host, netns=netns,
                           threads=1)
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
    """Subject -> (get, set) callables doing the same healthy call; raw pymemcache first
    (the baseline)."""
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


MANY = 10  # keys per get_many
MANY_OP = f"get_many ({MANY} keys, 3 nodes)"


def spread_keys(owners: Sequence[Callable[[str], object]], nodes: int,
                count: int = MANY) -> list[str]:
    """``count`` keys of the form ``bench:many:N`` that every placement in ``owners``
    spreads over all ``nodes`` (placement hashes the nodes' ports, which the harness
    picks at random, so a fixed key list may leave a node out).

    Raises:
        RuntimeError: no such keys among the first 10 000 candidates.
    """
    keys: list[str] = []
    spare: list[str] = []
    seen: list[set[object]] = [set() for _ in owners]
    for i in range(10_000):
        key = f"bench:many:{i}"
        homes = [owner(key) for owner in owners]
        if any(h not in s for h, s in zip(homes, seen, strict=True)):  # at most nodes x owners
            keys.append(key)
            for h, s in zip(homes, seen, strict=True):
                s.add(h)
        else:
            spare.append(key)
        if all(len(s) == nodes for s in seen) and len(keys) + len(spare) >= count:
            return (keys + spare)[:max(count, len(keys))]
    raise RuntimeError(f"no {count} keys reach all {nodes} nodes under every placement")


def _many_peers(nodes: Sequence[tuple[str, int]]) -> dict[str, Callable[[], object]]:
    """``get_many`` of :data:`MANY` keys: pymemcache's HashClient (baseline) and the
    wrapper, on the same nodes; the keys are chosen so each spreads them over all nodes,
    and stored on the node each placement puts them on."""
    from pymemcache.client.hash import HashClient

    from resilience.clients.memcache import Memcache

    hashed = HashClient(list(nodes), connect_timeout=1.0, timeout=1.0, no_delay=True,
                        default_noreply=False)
    cache = Memcache([f"{h}:{p}" for h, p in nodes], timeout=1.0, connect_timeout=1.0,
                     environ={})
    keys = spread_keys((hashed.hasher.get_node, cache.node_for), len(nodes))
    for h, p in nodes:
        _store(h, p, keys)
    peers: dict[str, Callable[[], Any]] = {
        "HashClient": lambda: hashed.get_many(keys),
        "wrapper": lambda: cache.get_many(keys),
    }
    for name, fn in peers.items():  # hits on every node, or the rows measure misses
        if len(fn()) != len(keys):
            raise RuntimeError(f"{name}: get_many did not find every benchmark key")
    return peers


def _overhead(host: str, port: int, calls: int, per_round: int = 100) -> list[OverheadRow]:
    """Healthy-path µs per call of each subject (see :mod:`resilience.bench.overhead`):
    about ``7 * calls`` calls each for ``get`` and ``set`` on one node, then a third of
    that for ``get_many`` of 10 keys over three nodes.

    The server runs one worker thread (see ``start_server``): with two, each client's
    connection lands on one of them, and a loopback round trip on this 2-vCPU VM takes
    ~25 µs when that thread shares our vCPU and ~75-100 µs when waking it needs the
    other one (measured: two identical raw clients, 2.6-3x apart, the fast one changing
    between runs), so the comparison measured where connections landed, not clients.
    """
    peers = _peers(host, port)
    cycles = max(7, 7 * calls // (per_round * len(peers)))
    rows: list[OverheadRow] = []
    for op_index, op in enumerate(("get", "set")):
        subjects = {name: fns[op_index] for name, fns in peers.items()}
        rows += interleave("memcached", op, subjects, cycles, per_round)
    rows += _get_many_rows(host, port, max(7, cycles // 3), per_round // 5)
    return rows


def _get_many_rows(host: str, port: int, cycles: int, per_round: int) -> list[OverheadRow]:
    from resilience.servers.memcached import Memcached

    work = Path(tempfile.mkdtemp(prefix="bench-many-"))
    extra = [Memcached(work / f"node{i}", name=f"memcached-bench-{i}", host=host, threads=1)
             for i in (1, 2)]
    try:
        for server in extra:
            server.start(timeout=15.0)
        nodes = [(host, port), *((s.host, s.port) for s in extra)]
        return interleave("memcached", MANY_OP, _many_peers(nodes), cycles, per_round)
    finally:
        for server in extra:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


PLUGIN = MemcachedBench()
