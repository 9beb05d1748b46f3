"""The memcached text protocol on asyncio streams, and a connection pool per node.

Just what :class:`~resilience.clients.memcache.AsyncMemcache` needs: retrieval
(``get``/``gets`` with many keys), storage (``set``/``add``/``replace``/``cas``),
``delete``, ``incr``/``decr``, ``touch``. Values are bytes (str is UTF-8 encoded); flags
are 0. Nothing here has a timeout of its own: the caller runs every request inside
``asyncio.timeout(remaining)``, and a connection whose request did not finish (timeout,
cancellation, error) is closed, never reused (its stream may still deliver the old
reply).
"""

from __future__ import annotations

import asyncio
import time
import weakref

__all__ = [
    "Conn", "ConnPool", "ProtocolError", "ReplyError", "ServerError", "check_key", "encode_value"
]

_MAX_KEY = 250


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
    raw = prefix + raw
    if not raw or len(raw) > _MAX_KEY:
        raise ValueError(f"memcache key {raw[:40]!r}: length must be 1..{_MAX_KEY} bytes")
    if any(b <= 32 or b == 127 for b in raw):
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


class Conn:
    """One connection: a reader and a writer; ``born``: when it was opened (monotonic)."""

    __slots__ = ("__weakref__", "born", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.born = time.monotonic()

    async def read_line(self) -> bytes:
        """One reply line without its CRLF; error replies raise :class:`ReplyError`."""
        return await self._line()

    async def _line(self) -> bytes:
        line = await self.reader.readuntil(b"\r\n")
        body = line[:-2]
        if body.startswith(b"SERVER_ERROR"):
            raise ServerError(body)
        if body.startswith(b"CLIENT_ERROR") or body == b"ERROR":
            raise ReplyError(body)
        return body

    async def fetch(self, cmd: bytes, keys: list[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """``get``/``gets`` of ``keys``: key -> (value, cas or 0) for keys present."""
        self.writer.write(cmd + b" " + b" ".join(keys) + b"\r\n")
        found: dict[bytes, tuple[bytes, int]] = {}
        while True:
            line = await self._line()
            if line == b"END":
                return found
            parts = line.split()
            if len(parts) not in (4, 5) or parts[0] != b"VALUE":
                raise ProtocolError(f"unexpected reply {line[:40]!r}")
            try:
                size = int(parts[3])
                cas = int(parts[4]) if len(parts) == 5 else 0
            except ValueError:
                raise ProtocolError(f"unexpected reply {line[:40]!r}") from None
            data = await self.reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise ProtocolError("value not followed by CRLF")
            found[parts[1]] = (data[:-2], cas)

    async def command(self, line: bytes, data: bytes | None = None) -> bytes:
        """Send one command (and its data block) and return the reply line."""
        if data is None:
            self.writer.write(line + b"\r\n")
        else:
            self.writer.write(line + b"\r\n" + data + b"\r\n")
        return await self._line()

    def close(self) -> None:
        self.writer.transport.abort()  # no FIN handshake to wait for; wakes a reader


class ConnPool:
    """Idle connections of one node; one connection per request.

    ``checkout`` pops an idle connection or opens one (the caller bounds the open with
    its timeout); ``checkin`` keeps at most ``size``; ``discard`` closes. Every
    connection made is remembered in a WeakSet so ``close()`` can abort those in use,
    which wakes their readers at once.
    """

    __slots__ = ("_all", "_closed", "_host", "_idle", "_loop", "_port", "size")

    def __init__(self, host: str, port: int, size: int) -> None:
        self._host, self._port, self.size = host, port, size
        self._idle: list[Conn] = []
        self._all: weakref.WeakSet[Conn] = weakref.WeakSet()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def checkout(self, connect_timeout: float) -> Conn:
        """An idle connection, or a new one opened within ``connect_timeout`` seconds.

        Raises:
            RuntimeError: used from an event loop other than the first one.
            TimeoutError, OSError: the connection could not be opened in time.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an AsyncMemcache is bound to the event loop that first used it")
        if self._idle:
            return self._idle.pop()
        return await self.connect(connect_timeout)

    async def connect(self, connect_timeout: float) -> Conn:
        """A new connection (never an idle one), opened within ``connect_timeout``."""
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(self._host, self._port)
        conn = Conn(reader, writer)
        self._all.add(conn)
        if self._closed:
            conn.close()
            raise ConnectionAbortedError("client closed while connecting")
        return conn

    def checkin(self, conn: Conn) -> None:
        if not self._closed and len(self._idle) < self.size:
            self._idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: Conn) -> None:
        conn.close()

    def stale(self, conn: Conn, exc: BaseException, start: float) -> bool:
        """Whether ``exc`` from ``conn`` says the pooled connection was already dead.

        True for a connection error (reset, broken pipe, end of stream; not a timeout)
        on a connection opened before ``start`` (monotonic; taken from the pool), as
        after memcached was killed and restarted on the same port. Then every idle
        connection of the node is closed too: they are as old, so as likely dead.
        """
        if (self._closed or not isinstance(exc, (ConnectionError, asyncio.IncompleteReadError))
                or conn.born >= start):
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
    def open_count(self) -> int:
        """Connections not yet closed, for leak tests."""
        return sum(1 for c in list(self._all) if not c.writer.transport.is_closing())
