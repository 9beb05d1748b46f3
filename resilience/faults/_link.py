"""One proxied connection: two sockets, two directions, each a reader and a writer.

Theory of operation. Each direction has a reader task that reads chunks (stamped with
their arrival time) into a small bounded queue, and a writer task that runs each chunk
through the toxics active for that direction and sends the result. Splitting them keeps
reads flowing while a toxic sleeps (latency counts from arrival, like a real link) and
bounds the memory a stalled peer can pin. Everything runs on the proxy's event loop; no
lock is needed. ``close``/``reset`` unregister the sockets from the loop before closing
them, so they may be called from any toxic or timer of this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from resilience.faults.toxics import SlowClose, Toxic

if TYPE_CHECKING:
    from resilience.faults.proxy import _Stats

_CHUNK = 65536
_QUEUE = 16  # chunks in flight per direction: bounds memory under a stalled writer
_EOF_POLL = 0.05  # how often a held end of stream checks whether its toxic went away


class _Flow:
    """One direction of a link; implements the ``Flow`` protocol toxics see."""

    def __init__(self, link: _Link, direction: str, src: socket.socket, dst: socket.socket):
        self.link = link
        self.direction = direction
        self.src = src
        self.dst = dst
        self.arrived = 0.0
        self.state: dict[str, Any] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE)
        self.done = False
        self.current = ""  # name of the toxic whose pipe() is running
        self.busy = False  # the writer is handling a chunk (order: never overtake it)

    def now(self) -> float:
        return time.monotonic()

    def rand(self) -> float:
        return self.link.rng.random()

    def randint(self, lo: int, hi: int) -> int:
        return self.link.rng.randint(lo, hi)

    async def sleep(self, seconds: float) -> None:
        """Sleep for a toxic; cut short when that toxic is removed from this link, so
        removing a 10 s latency releases the chunk it holds at once."""
        if seconds <= 0:
            return
        name = self.current
        wake = self.link.wake
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while name in self.link.decided:
                    await wake.wait()
                    wake = self.link.wake

    async def write(self, data: bytes) -> None:
        await self.link.loop.sock_sendall(self.dst, data)
        self.link.stats.add_forwarded(self.direction, len(data))

    def close(self) -> None:
        self.link.close()

    def reset(self) -> None:
        self.link.close(reset=True)

    def call_later(self, owner: str, seconds: float, fn: Callable[[], None]) -> None:
        self.link.call_later(owner, seconds, fn)

    async def read_loop(self, toxics: Callable[[], Iterable[Toxic]]) -> None:
        loop = self.link.loop
        while True:
            data = await loop.sock_recv(self.src, _CHUNK)
            self.link.stats.add_seen(self.direction, len(data))
            if data and not self.busy and self.queue.empty() and not self._toxic(toxics):
                # Healthy fast path: nothing queued, nothing being written, no toxic:
                # forward from here, saving a hop through the writer task.
                await self.write(data)
                continue
            await self.queue.put((time.monotonic(), data))
            if not data:
                return

    def _toxic(self, toxics: Callable[[], Iterable[Toxic]]) -> bool:
        """Does any toxic currently apply to this direction of this link?"""
        return any(t.direction == self.direction and self.link.active(t) for t in toxics())

    async def write_loop(self, toxics: Callable[[], Iterable[Toxic]]) -> None:
        while not self.link.closed:
            self.arrived, data = await self.queue.get()
            self.busy = True
            try:
                await self._process(data, toxics)
            finally:
                self.busy = False
            if not data:
                return

    async def _process(self, data: bytes, toxics: Callable[[], Iterable[Toxic]]) -> None:
        """Run one chunk through this direction's active toxics and send what is left."""
        if not data:
            await self._end(toxics)
            return
        for toxic in toxics():
            if toxic.direction != self.direction or not self.link.active(toxic):
                continue
            self.state = self.states.setdefault(toxic.name, {})
            self.current = toxic.name
            data = await toxic.pipe(data, self)
            if not data or self.link.closed:
                break
        if data and not self.link.closed:
            await self.write(data)

    async def _end(self, toxics: Callable[[], Iterable[Toxic]]) -> None:
        """End of stream from ``src``: hold it while a holds_eof toxic is active, delay
        it for slow_close, then half-close ``dst``."""

        def mine() -> list[Toxic]:
            return [t for t in toxics() if t.direction == self.direction and self.link.active(t)]

        while any(t.holds_eof for t in mine()):
            await asyncio.sleep(_EOF_POLL)
        for t in mine():
            if isinstance(t, SlowClose):
                await asyncio.sleep(t.delay_ms / 1000)
        self.done = True
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)
        if all(f.done for f in self.link.flows):
            self.link.close()


class _Link:
    """A client connection and its upstream connection."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        upstream: socket.socket,
        rng: random.Random,
        stats: _Stats,
        on_close: Callable[[_Link], None],
    ):
        self.loop = loop
        self.client = client
        self.upstream = upstream
        self.rng = rng
        self.stats = stats
        self.on_close = on_close
        self.closed = False
        self.flows = (
            _Flow(self, "upstream", client, upstream),
            _Flow(self, "downstream", upstream, client),
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.timers: dict[str, list[asyncio.TimerHandle]] = {}
        self.decided: dict[str, bool] = {}  # toxic name -> applies to this link
        self.wake = asyncio.Event()  # set (and replaced) whenever a toxic is detached

    def active(self, toxic: Toxic) -> bool:
        return self.decided.get(toxic.name, False)

    def attach(self, toxic: Toxic) -> None:
        """Decide once whether ``toxic`` applies here (seeded draw), then let it start."""
        if toxic.proxy_level or toxic.name in self.decided:
            return
        hit = toxic.probability >= 1.0 or self.rng.random() < toxic.probability
        self.decided[toxic.name] = hit
        if hit:
            flow = self.flows[0] if toxic.direction == "upstream" else self.flows[1]
            flow.state = flow.states.setdefault(toxic.name, {})
            toxic.attach(flow)

    def detach(self, toxic: Toxic) -> None:
        self.decided.pop(toxic.name, None)
        self.wake.set()  # wake sleeping pipes; each checks whether its toxic went
        self.wake = asyncio.Event()
        for flow in self.flows:
            flow.states.pop(toxic.name, None)
        for handle in self.timers.pop(toxic.name, []):
            handle.cancel()

    def call_later(self, owner: str, seconds: float, fn: Callable[[], None]) -> None:
        self.timers.setdefault(owner, []).append(self.loop.call_later(seconds, fn))

    def start(self, toxics: Callable[[], Iterable[Toxic]]) -> None:
        if self.closed:  # a toxic ended it as it attached (a reset at connect)
            return
        for flow in self.flows:
            self.tasks.append(self.loop.create_task(self._guard(flow.read_loop, toxics)))
            self.tasks.append(self.loop.create_task(self._guard(flow.write_loop, toxics)))

    async def _guard(self, pump: Callable[[Callable[[], Iterable[Toxic]]], Awaitable[None]],
                     toxics: Callable[[], Iterable[Toxic]]) -> None:
        """Run a pump; a peer's reset is passed on as a reset, any other error closes.

        The pump's coroutine is made here, inside the task: a task cancelled before its
        first step (the link closed at once) then leaves no never-awaited coroutine.
        """
        try:
            await pump(toxics)
        except ConnectionResetError:
            self.close(reset=True)
        except OSError:
            self.close()

    def close(self, reset: bool = False) -> None:
        """Close both sockets (with RST if ``reset``) and stop the pumps. Idempotent."""
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task(self.loop) if self.loop.is_running() else None
        for task in self.tasks:
            if task is not current:
                task.cancel()
        for handles in self.timers.values():
            for handle in handles:
                handle.cancel()
        for sock in (self.client, self.upstream):
            _close_socket(self.loop, sock, reset)
        self.on_close(self)


def _close_socket(loop: asyncio.AbstractEventLoop, sock: socket.socket, reset: bool) -> None:
    # Unregister first: closing an fd the selector still watches corrupts the loop.
    if sock.fileno() >= 0:
        with contextlib.suppress(Exception):
            loop.remove_reader(sock.fileno())
            loop.remove_writer(sock.fileno())
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
