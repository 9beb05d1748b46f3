"""FaultProxy: an asyncio TCP proxy on loopback that applies toxics to live traffic.

Usable from sync code (``start()`` runs its own loop in a daemon thread) and from async
code (``async with FaultProxy(...)`` runs on the current loop)::

    with FaultProxy("127.0.0.1:11211", seed=1) as proxy:       # sync
        client = Client(proxy.address)
        with proxy.toxic(Blackhole()):                          # the slide's hang
            ...

Toxics may be added and removed at any time; they apply to connections already open
as well as new ones (a blackhole added now hangs an ESTABLISHED connection). Methods are
safe to call from any thread: from a foreign thread they are handed to the proxy's loop
and waited for (bounded by ``op_timeout``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from resilience.faults._addresses import parse_hostport
from resilience.faults._link import _close_socket, _Link
from resilience.faults.toxics import Toxic

__all__ = ["FaultProxy", "ProxyCounters"]

R = TypeVar("R")


@dataclass(frozen=True)
class ProxyCounters:
    """A snapshot of what the proxy saw. ``*_bytes`` were read from a side, ``*_forwarded``
    were written to the other side (they differ when a toxic swallows or slices)."""

    accepted: int
    active: int
    closed: int
    upstream_bytes: int
    downstream_bytes: int
    upstream_forwarded: int
    downstream_forwarded: int


class _Stats:
    def __init__(self) -> None:
        self.accepted = self.closed = 0
        self.seen = {"upstream": 0, "downstream": 0}
        self.forwarded = {"upstream": 0, "downstream": 0}

    def add_seen(self, direction: str, n: int) -> None:
        self.seen[direction] += n

    def add_forwarded(self, direction: str, n: int) -> None:
        self.forwarded[direction] += n


class FaultProxy:
    """A TCP proxy from ``listen`` (loopback) to ``upstream`` with live toxics.

    Args:
        upstream: ``"host:port"`` or ``(host, port)``; loopback or inside a namespace
            created by :mod:`resilience.faults.netns`.
        listen: loopback address to bind; port 0 (the default) picks a free port.
        seed: seed of the proxy's own ``random.Random`` (probabilities, jitter, garbage),
            so a run replays; ignored if ``rng`` is given.
        rng: a random source to use instead.
        connect_timeout: bound on connecting upstream; on expiry the client is closed.
        op_timeout: bound on each cross-thread call (start, stop, add, remove).

    Raises:
        ValueError: an address is malformed or not loopback / our namespace.
    """

    def __init__(
        self,
        upstream: str | tuple[str, int],
        *,
        listen: str | tuple[str, int] = ("127.0.0.1", 0),
        seed: int | None = None,
        rng: random.Random | None = None,
        connect_timeout: float = 2.0,
        op_timeout: float = 5.0,
    ) -> None:
        self.upstream = parse_hostport(upstream, "upstream")
        host, port = parse_hostport(listen, "listen")
        if not host.startswith("127.") and host != "::1":
            raise ValueError(f"listen {host!r}: the proxy binds to loopback only")
        self._listen = (host, port)
        self.rng = rng if rng is not None else random.Random(seed)
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self._toxics: dict[str, Toxic] = {}
        self._links: set[_Link] = set()
        self._stats = _Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None  # bound; listening unless refusing
        self._pending: set[asyncio.Task[None]] = set()

    # -- addresses and counters -------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on (the port is known once started)."""
        return self._listen

    @property
    def host(self) -> str:
        return self._listen[0]

    @property
    def port(self) -> int:
        return self._listen[1]

    def __repr__(self) -> str:
        return f"FaultProxy({self.host}:{self.port} -> {self.upstream[0]}:{self.upstream[1]})"

    def counters(self) -> ProxyCounters:
        """A snapshot of the connection and byte counters."""
        s = self._stats
        return ProxyCounters(
            s.accepted, len(self._links), s.closed, s.seen["upstream"], s.seen["downstream"],
            s.forwarded["upstream"], s.forwarded["downstream"],
        )

    def wait_until(self, predicate: Callable[[ProxyCounters], bool], timeout: float = 2.0) -> bool:
        """Poll the counters until ``predicate`` holds; False after ``timeout`` seconds.

        It sleeps between polls: call it from sync code, not from the proxy's own loop.
        """
        end = time.monotonic() + timeout
        while not predicate(self.counters()):
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)
        return True

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start on a private event loop in a daemon thread; returns self."""
        if self._loop is not None:
            raise RuntimeError(f"{self!r} is already started")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=repr(self), daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._astart(loop), loop)
        try:
            fut.result(self.op_timeout)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(self.op_timeout)
            loop.close()
            self._loop = None
            raise
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the thread. Bounded; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if thread is None:
            raise RuntimeError(f"{self!r} runs on a caller's event loop: use astop()")
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(self.op_timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.op_timeout)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    async def astart(self) -> FaultProxy:
        """Start on the running event loop."""
        await self._astart(asyncio.get_running_loop())
        return self

    async def astop(self) -> None:
        """Close the listener and every connection."""
        await self._astop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FaultProxy:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    async def _astart(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._bind()
        if not any(t.proxy_level for t in self._toxics.values()):
            self._listen_now()

    async def _astop(self) -> None:
        self._unlisten(drain=False)  # closes the socket, listening or only bound (Refuse)
        for link in list(self._links):
            link.close()
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(self._pending, timeout=self.op_timeout)
        self._loop = None

    # -- listener: bound always, listening unless a Refuse toxic is active -------------

    def _bind(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self._listen)
        sock.setblocking(False)
        self._sock = sock
        self._listen = sock.getsockname()[:2]

    def _listen_now(self) -> None:
        # A socket bound but not listening answers SYNs with RST (ECONNREFUSED) and keeps
        # the port ours; a fresh socket is needed because listen() cannot be undone.
        assert self._loop is not None
        if self._sock is None:
            self._bind()
        assert self._sock is not None
        self._sock.listen(128)
        # A reader callback, not an accept task: it accepts and takes the connection in
        # one step, so a Refuse cannot cancel an accept whose connection is already out
        # of the kernel's queue (the client saw connect() succeed, then was reset).
        self._loop.add_reader(self._sock.fileno(), self._accept_ready)

    def _accept_ready(self) -> None:
        """Take in every connection the kernel has completed on the listener."""
        while self._sock is not None:
            try:
                client, _ = self._sock.accept()
            except ConnectionAbortedError:
                continue
            except OSError:  # nothing pending (or not listening); the reader calls again
                return
            self._spawn_link(client)

    def _unlisten(self, drain: bool = True) -> None:
        if self._sock is None or self._loop is None:
            return
        if drain:
            # Connections the kernel completed but we have not accepted yet would be
            # reset by closing the listener; their clients think they are connected,
            # so take them in first (not when stopping: then everything closes).
            self._accept_ready()
        _close_socket(self._loop, self._sock, reset=False)  # also removes the reader
        self._sock = None

    def _spawn_link(self, client: socket.socket) -> None:
        assert self._loop is not None
        self._stats.accepted += 1
        task = self._loop.create_task(self._open_link(client))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _open_link(self, client: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = socket.socket(socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET)
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.sock_connect(up, self.upstream)
        except BaseException as exc:
            # The upstream is down (or we are stopping): the client sees its connection
            # closed at once.
            _close_socket(loop, up, reset=False)
            _close_socket(loop, client, reset=False)
            self._stats.closed += 1
            if isinstance(exc, OSError | TimeoutError):
                return
            raise
        link = _Link(loop, client, up, self.rng, self._stats, self._on_close)
        self._links.add(link)
        for toxic in list(self._toxics.values()):
            link.attach(toxic)
        link.start(lambda: list(self._toxics.values()))

    def _on_close(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self._stats.closed += 1

    # -- toxics -----------------------------------------------------------------------

    def _in_loop(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on the proxy's loop: directly if we are on it, else hand it over."""
        loop = self._loop
        if loop is None:
            return fn()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()
        fut: concurrent.futures.Future[R] = concurrent.futures.Future()

        def call() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return fut.result(self.op_timeout)

    @property
    def toxics(self) -> list[Toxic]:
        """The active toxics, in the order they apply."""
        return list(self._toxics.values())

    def add(self, toxic: Toxic) -> Toxic:
        """Add ``toxic``; it applies to live connections at once. Returns it.

        Raises:
            ValueError: a toxic with the same name is already on this proxy.
        """

        def do() -> Toxic:
            if toxic.name in self._toxics:
                raise ValueError(f"{self!r} already has a toxic named {toxic.name!r}")
            self._toxics[toxic.name] = toxic
            if toxic.proxy_level:
                if self._loop is not None:
                    self._unlisten()
                    self._bind()
            else:
                for link in list(self._links):
                    link.attach(toxic)
            return toxic

        return self._in_loop(do)

    def remove(self, toxic: Toxic | str) -> None:
        """Remove a toxic (or its name); later bytes flow normally again.

        Raises:
            KeyError: no toxic by that name.
        """
        name = toxic if isinstance(toxic, str) else toxic.name

        def do() -> None:
            if name not in self._toxics:
                raise KeyError(f"{self!r} has no toxic named {name!r}")
            removed = self._toxics.pop(name)
            if removed.proxy_level:
                if self._loop is not None and not any(
                    t.proxy_level for t in self._toxics.values()
                ):
                    self._listen_now()
            else:
                for link in list(self._links):
                    link.detach(removed)

        self._in_loop(do)

    def clear(self) -> None:
        """Remove every toxic."""
        for toxic in self.toxics:
            self.remove(toxic)

    @contextlib.contextmanager
    def toxic(self, toxic: Toxic) -> Iterator[Toxic]:
        """``with proxy.toxic(Latency(latency_ms=50)):`` adds it, and removes it on exit."""
        self.add(toxic)
        try:
            yield toxic
        finally:
            self.remove(toxic)

    @contextlib.asynccontextmanager
    async def atoxic(self, toxic: Toxic) -> AsyncIterator[Toxic]:
        """Async twin of :meth:`toxic` (add and remove never block; no await needed)."""
        with self.toxic(toxic):
            yield toxic

    def close_connections(self, reset: bool = False) -> None:
        """Close every live connection (with RST if ``reset``); the listener stays."""

        def do() -> None:
            for link in list(self._links):
                link.close(reset=reset)

        self._in_loop(do)
