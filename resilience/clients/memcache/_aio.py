"""The memcached text protocol on an asyncio transport, and a connection pool per node.

Just what :class:`~resilience.clients.memcache.AsyncMemcache` needs: retrieval
(``get``/``gets`` with many keys), storage (``set``/``add``/``replace``/``cas``),
``delete``, ``incr``/``decr``, ``touch``. Values are bytes (str is UTF-8 encoded); flags
are 0.

A :class:`Conn` is an :class:`asyncio.Protocol` that parses replies straight from its
receive buffer, one future per wait (about half the cost of StreamReader per call). It
bounds each request by a deadline (:meth:`Conn.arm`): past it, the request fails with
TimeoutError and the connection is aborted. A connection whose request did not finish
(timeout, cancellation, error) is closed, never reused (it may still deliver the old
reply).
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = [
    "Conn", "ConnPool", "ProtocolError", "ReplyError", "ServerError", "check_key", "encode_value"
]

_MAX_KEY = 250
_MAX_LINE = 65536  # a reply line longer than this is not memcached (StreamReader's limit)
_BAD_KEY_BYTES = bytes([*range(33), 127])  # whitespace and control bytes
_IDLE = float("inf")


class ProtocolError(Exception):
    """The server's reply is not the memcached protocol (or not the expected reply)."""


class ReplyError(Exception):
    """The server answered ``CLIENT_ERROR`` (or, as :class:`ServerError`, ``SERVER_ERROR``)."""

    def __init__(self, line: bytes) -> None:
        super().__init__(line.decode("ascii", "replace"))


class ServerError(ReplyError):
    """The server answered ``SERVER_ERROR``: the server failed, not the protocol."""


def check_key(key: str | bytes, prefix: bytes) -> bytes:
    """The wire form of ``key``.

    Raises:
        ValueError: empty, longer than 250 bytes with the prefix, or containing
            whitespace or control characters.
    """
    raw = key.encode() if isinstance(key, str) else key
    if not isinstance(raw, bytes):
        raise ValueError(f"memcache key must be str or bytes, got {type(key).__name__}")
    if prefix:
        raw = prefix + raw
    if not raw or len(raw) > _MAX_KEY:
        raise ValueError(f"memcache key {raw[:40]!r}: length must be 1..{_MAX_KEY} bytes")
    # One C-level pass: deleting the forbidden bytes shortens the key iff it has any.
    if len(raw.translate(None, _BAD_KEY_BYTES)) != len(raw):
        raise ValueError(f"memcache key {raw[:40]!r}: contains whitespace or control bytes")
    return raw


def encode_value(value: str | bytes) -> bytes:
    """The bytes stored for ``value``.

    Raises:
        ValueError: ``value`` is neither bytes nor str.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"memcache value must be bytes or str, got {type(value).__name__}")


def _closed_error() -> BaseException:
    return asyncio.IncompleteReadError(b"", None)


class Conn(asyncio.Protocol):
    """One connection: the transport, the bytes received and not yet parsed, and the
    future the request in progress waits on.

    Once the connection fails (closed by either side, :meth:`expire`, :meth:`close`),
    every wait raises that failure: a request never waits on a dead connection.
    """

    __slots__ = ("__weakref__", "_buf", "_deadline", "_failed", "_loop", "_timer", "_timer_at",
                 "_transport", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._failed: BaseException | None = None
        self._deadline = _IDLE  # of the request in progress (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _IDLE

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(_closed_error())
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc if exc is not None else _closed_error())

    # ---- failure ---------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(self._failed)

    # ---- the deadline --------------------------------------------------------------

    def arm(self, deadline: float) -> None:
        """Bound the request about to start by ``deadline`` (loop time): past it, its
        wait fails with TimeoutError and the connection is aborted.

        One timer per connection, not per request: a pending timer due at or before
        ``deadline`` is kept, and when it fires early it re-arms itself for the request
        then in progress (if any). Back-to-back requests with the same budget so cost
        an attribute store, not a timer each (``loop.call_at`` and ``cancel``).
        """
        self._deadline = deadline
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def disarm(self) -> None:
        """The request completed: no deadline until the next :meth:`arm`."""
        self._deadline = _IDLE

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, _IDLE
        deadline = self._deadline
        if deadline == _IDLE:
            return  # idle (the request it was armed for completed)
        if self._loop.time() >= deadline:
            self.expire()
        else:  # armed for an earlier request: now bound the current one
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def expire(self) -> None:
        """The request's deadline passed: fail its wait with TimeoutError and abort."""
        self._fail(TimeoutError())
        self.close()

    def close(self) -> None:
        """Abort (no FIN handshake to wait for); the request in progress fails at once."""
        self._fail(_closed_error())
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, _IDLE
        if self._transport is not None:
            self._transport.abort()

    @property
    def usable(self) -> bool:
        """Not failed (every way a connection ends fails it first): may be reused."""
        return self._failed is None

    # ---- requests ----------------------------------------------------------------------

    def _wait(self) -> asyncio.Future[None]:
        if self._failed is not None:
            raise self._failed
        waiter = self._loop.create_future()
        self._waiter = waiter
        return waiter

    def write(self, data: bytes) -> None:
        """Send ``data`` (buffered by the transport; no flow control is needed for one
        request's worth)."""
        if self._failed is not None:
            raise self._failed
        assert self._transport is not None
        self._transport.write(data)

    async def read_line(self) -> bytes:
        """One reply line without its CRLF; error replies raise :class:`ReplyError`."""
        buf = self._buf
        end = buf.find(b"\r\n")
        while end < 0:  # waits inline: a helper coroutine per line costs a frame
            if len(buf) > _MAX_LINE:
                raise ProtocolError("reply line too long")
            await self._wait()
            end = buf.find(b"\r\n")
        body = bytes(buf[:end])
        del buf[:end + 2]
        return _checked(body)

    async def fetch(self, cmd: bytes, keys: list[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """``get``/``gets`` of ``keys``: key -> (value, cas or 0) for keys present."""
        self.write(cmd + b" " + b" ".join(keys) + b"\r\n")
        found: dict[bytes, tuple[bytes, int]] = {}
        buf = self._buf
        pos = 0  # start of the first line not parsed yet; consumed at the end only
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > _MAX_LINE:
                    raise ProtocolError("reply line too long")
                await self._wait()
                continue
            if end - pos == 3 and buf.startswith(b"END", pos):
                del buf[:end + 2]
                return found
            line = bytes(buf[pos:end])
            parts = line.split()
            n = len(parts)
            if (n != 4 and n != 5) or parts[0] != b"VALUE":
                _checked(line)  # raises the server's error reply, if it is one
                raise ProtocolError(f"unexpected reply {line[:40]!r}")
            try:
                size = int(parts[3])
                cas = int(parts[4]) if n == 5 else 0
            except ValueError:
                raise ProtocolError(f"unexpected reply {line[:40]!r}") from None
            stop = end + 2 + size
            while len(buf) < stop + 2:
                await self._wait()
            if buf[stop:stop + 2] != b"\r\n":
                raise ProtocolError("value not followed by CRLF")
            found[parts[1]] = (bytes(buf[end + 2:stop]), cas)
            pos = stop + 2

    async def command(self, line: bytes, data: bytes | None = None) -> bytes:
        """Send one command (and its data block) and return the reply line."""
        if data is None:
            self.write(line + b"\r\n")
        else:
            self.write(line + b"\r\n" + data + b"\r\n")
        return await self.read_line()


def _checked(body: bytes) -> bytes:
    if body.startswith(b"SERVER_ERROR"):
        raise ServerError(body)
    if body.startswith(b"CLIENT_ERROR") or body == b"ERROR":
        raise ReplyError(body)
    return body


class ConnPool:
    """Idle connections of one node; one connection per request.

    ``take`` pops an idle connection (None if there is none); ``connect`` opens one (the
    caller bounds it); ``checkin`` keeps at most ``size`` usable ones; ``discard``
    closes. Every connection made is remembered in a WeakSet so ``close()`` can abort
    those in use, which fails their requests at once.
    """

    __slots__ = ("_all", "_closed", "_host", "_idle", "_port", "loop", "size")

    def __init__(self, host: str, port: int, size: int) -> None:
        self._host, self._port, self.size = host, port, size
        self._idle: list[Conn] = []
        self._all: weakref.WeakSet[Conn] = weakref.WeakSet()
        self._closed = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def take(self) -> Conn | None:
        """An idle connection, or None.

        Raises:
            RuntimeError: used from an event loop other than the first one.
        """
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            if self.loop is not None:
                raise RuntimeError(
                    "an AsyncMemcache is bound to the event loop that first used it")
            self.loop = loop
        idle = self._idle
        return idle.pop() if idle else None

    async def connect(self, connect_timeout: float) -> Conn:
        """A new connection, opened within ``connect_timeout`` seconds.

        Raises:
            TimeoutError, OSError: the connection could not be opened in time.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(lambda: Conn(loop), self._host, self._port)
        self._all.add(conn)
        if self._closed:
            conn.close()
            raise ConnectionAbortedError("client closed while connecting")
        return conn

    async def checkout(self, connect_timeout: float) -> Conn:
        """An idle connection, or a new one opened within ``connect_timeout`` seconds."""
        return self.take() or await self.connect(connect_timeout)

    def checkin(self, conn: Conn) -> None:
        if not self._closed and len(self._idle) < self.size and conn.usable:
            self._idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: Conn) -> None:
        conn.close()

    def stale(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised on a connection taken from the pool, says the pooled
        connections are dead (reset, broken pipe, end of stream; never a timeout), as
        after memcached was killed and restarted on the same port. Then every idle
        connection of the node is closed too: they are as old, so as likely dead.
        """
        if self._closed or not isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
            return False
        idle, self._idle = self._idle, []
        for other in idle:
            other.close()
        return True

    def close(self) -> None:
        """Close idle connections and abort those in use (their calls end at once)."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._all):
            conn.close()

    @property
    def idle_count(self) -> int:
        """Idle connections held (for tests and stats), as the sync pool's."""
        return len(self._idle)

    @property
    def open_count(self) -> int:
        """Connections not yet closed, for leak tests."""
        return sum(1 for c in list(self._all)
                   if c._transport is not None and not c._transport.is_closing())
