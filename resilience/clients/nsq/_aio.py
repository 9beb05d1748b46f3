"""asyncio connections to nsqd (publisher and consumer), every wait bounded.

The asyncio twin of ``_syncio``: streams, ``asyncio.timeout`` at the caller's deadline
around every connect, write and read. A pooled connection whose transport is closing
(nsqd closed it) or that idled too long is discarded before a request is written.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time

from resilience.clients.nsq._proto import (
    FRAME_ERROR,
    FRAME_RESPONSE,
    HEARTBEAT,
    MAGIC,
    NOP,
    ConnectFailed,
    ConnectTimeout,
    FrameError,
    ProtocolError,
    error_frame,
    http_complete,
    http_reply,
    http_request,
    parse_frames,
)

__all__ = ["AConn", "APool", "aconnect", "http_get"]

_IDLE_MAX = 20.0  # as _syncio: below nsqd's two missed heartbeats


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def aconnect(address: str, timeout: float) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
    """Open a connection within ``timeout`` seconds (ConnectTimeout/ConnectFailed)."""
    host, port = _split(address)
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError as exc:
        raise ConnectTimeout(f"connect to {address} timed out") from exc
    except OSError as exc:
        raise ConnectFailed(f"connect to {address}: {exc}") from exc
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


class AConn:
    """One protocol connection; :meth:`request` must run under ``asyncio.timeout``."""

    __slots__ = ("buf", "greeted", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = bytearray()
        self.greeted = False
        self.idle_since = time.monotonic()

    async def request(self, data: bytes) -> bytes:
        """Write ``data``; the data of nsqd's response frame (heartbeats answered)."""
        if not self.greeted:
            data = MAGIC + data
            self.greeted = True
        self.writer.write(data)
        while True:
            for kind, payload in await self.frames():
                if kind == FRAME_RESPONSE and payload == HEARTBEAT:
                    self.writer.write(NOP)
                    continue
                if kind == FRAME_ERROR:
                    raise error_frame(payload)
                if kind == FRAME_RESPONSE:
                    return payload
                raise ProtocolError("a message frame on a publishing connection")

    async def frames(self) -> list[tuple[int, bytes]]:
        """At least one complete frame (ConnectionResetError once nsqd closed)."""
        frames = parse_frames(self.buf)
        while not frames:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionResetError("nsqd closed the connection")
            self.buf += chunk
            frames = parse_frames(self.buf)
        return frames

    def usable(self) -> bool:
        """False if nsqd closed this idle connection (or sent anything: a heartbeat
        every 30 s, rare enough to just discard), or it idled too long."""
        if (self.writer.is_closing() or self.reader.at_eof()
                or time.monotonic() - self.idle_since > _IDLE_MAX):
            return False
        sock = self.writer.get_extra_info("socket")
        try:
            # The loop may not have run since nsqd closed the socket: ask the kernel.
            return sock is None or not select.select([sock.fileno()], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.writer.transport.abort()


class APool:
    """Idle connections to one nsqd for one event loop, and every one open (to close)."""

    def __init__(self, address: str, size: int) -> None:
        self.address = address
        self.size = size
        self._idle: list[AConn] = []
        self._all: set[AConn] = set()
        self.closed = False

    async def checkout(self, connect_timeout: float) -> AConn:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            self.discard(conn)
        conn = AConn(*await aconnect(self.address, connect_timeout))
        if self.closed:
            conn.close()
            raise ConnectionAbortedError("client is closed")
        self._all.add(conn)
        return conn

    def checkin(self, conn: AConn) -> None:
        conn.idle_since = time.monotonic()
        if not self.closed and len(self._idle) < self.size:
            self._idle.append(conn)
        else:
            self.discard(conn)

    def discard(self, conn: AConn) -> None:
        self._all.discard(conn)
        conn.close()

    def close(self) -> None:
        self.closed = True
        conns, self._all, self._idle = list(self._all), set(), []
        for conn in conns:
            conn.close()


class AHttp:
    """``POST`` to one nsqd's HTTP port; open requests are tracked to abort on close."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._open: set[asyncio.StreamWriter] = set()
        self.closed = False

    async def post(self, path: str, body: bytes, connect_timeout: float) -> None:
        reader, writer = await aconnect(self.address, connect_timeout)
        if self.closed:
            writer.transport.abort()
            raise ConnectionAbortedError("client is closed")
        self._open.add(writer)
        try:
            writer.write(http_request(self.address, path, body))
            raw = bytearray()
            while not http_complete(raw):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                raw += chunk
            http_reply(bytes(raw))
        finally:
            self._open.discard(writer)
            writer.transport.abort()

    def close(self) -> None:
        self.closed = True
        for writer in list(self._open):
            writer.transport.abort()


async def http_get(address: str, path: str, timeout: float) -> bytes:
    """The body of ``GET path`` on ``address`` within ``timeout`` (lookupd's
    ``/lookup``, nsqd's ``/channel/create``). Raises FrameError on a non-200 status."""
    async with asyncio.timeout(timeout):
        reader, writer = await aconnect(address, timeout)
        try:
            writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                         % (path.encode(), address.encode()))
            raw = await reader.read(-1)
        finally:
            writer.transport.abort()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
    if status != b"200":
        raise FrameError(f"HTTP {status.decode(errors='replace')} from {address}{path}")
    return body
