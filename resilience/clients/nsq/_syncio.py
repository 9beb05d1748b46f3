"""Blocking sockets to nsqd, every wait bounded by the caller's deadline.

A :class:`TcpPool` per nsqd keeps a few idle connections. A request is written and its
reply read with a socket timeout recomputed from the deadline before every send and
receive, so a reply that trickles in is still cut at the deadline. Heartbeats nsqd
sends while a connection is idle or in use are answered with NOP. Before an idle
connection is reused, anything already received is read without blocking: a closed
one (nsqd restarted, or dropped a connection that stayed idle past two heartbeats) is
discarded then, before the request is written, so a stale connection never turns a
publish into an ambiguous outcome.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from resilience.clients.nsq._proto import (
    FRAME_ERROR,
    FRAME_RESPONSE,
    HEARTBEAT,
    MAGIC,
    NOP,
    ConnectFailed,
    ConnectTimeout,
    ProtocolError,
    error_frame,
    http_complete,
    http_reply,
    http_request,
    parse_frames,
)

__all__ = ["HttpPoster", "TcpConn", "TcpPool"]

_monotonic = time.monotonic
_IDLE_MAX = 20.0  # nsqd drops a client silent for 2 heartbeats (30 s each by default)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def connect(address: str, timeout: float) -> socket.socket:
    """A connected socket to ``address`` within ``timeout`` seconds.

    Raises:
        ConnectTimeout, ConnectFailed: nothing was sent.
    """
    try:
        sock = socket.create_connection(_split(address), timeout=max(timeout, 0.0005))
    except TimeoutError as exc:
        raise ConnectTimeout(f"connect to {address} timed out") from exc
    except OSError as exc:
        raise ConnectFailed(f"connect to {address}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _left(deadline: float) -> float:
    left = deadline - _monotonic()
    if left <= 0:
        raise TimeoutError("nsqd did not answer in time")
    return left


class TcpConn:
    """One protocol connection: ``request(data, deadline)`` -> the response frame."""

    __slots__ = ("buf", "greeted", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.greeted = False  # the magic goes out with the first command
        self.idle_since = _monotonic()

    def request(self, data: bytes, deadline: float) -> bytes:
        """Write ``data`` and return the data of nsqd's response frame.

        Raises:
            TimeoutError: no complete reply by ``deadline``; FrameError (and its
            subclasses), NsqCallerError: an error frame; ConnectionError: closed.
        """
        if not self.greeted:
            data = MAGIC + data
            self.greeted = True
        sock = self.sock
        sock.settimeout(_left(deadline))
        sock.sendall(data)
        while True:
            for kind, payload in self._frames(deadline):
                if kind == FRAME_RESPONSE and payload == HEARTBEAT:
                    sock.settimeout(_left(deadline))
                    sock.sendall(NOP)
                    continue
                if kind == FRAME_ERROR:
                    raise error_frame(payload)
                if kind == FRAME_RESPONSE:
                    return payload
                raise ProtocolError("a message frame on a publishing connection")

    def _frames(self, deadline: float) -> list[tuple[int, bytes]]:
        frames = parse_frames(self.buf)
        while not frames:
            self.sock.settimeout(_left(deadline))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("nsqd closed the connection")
            self.buf += chunk
            frames = parse_frames(self.buf)
        return frames

    def usable(self) -> bool:
        """Without blocking: False if nsqd closed this connection (or it idled too
        long); heartbeats already received are answered."""
        if _monotonic() - self.idle_since > _IDLE_MAX:
            return False
        try:
            while select.select([self.sock], [], [], 0)[0]:
                self.sock.settimeout(0.05)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return False
                self.buf += chunk
            for kind, payload in parse_frames(self.buf):
                if kind != FRAME_RESPONSE or payload != HEARTBEAT:
                    return False  # an unexpected frame: the state is unknown
                self.sock.sendall(NOP)
        except (OSError, ValueError, ProtocolError):
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        self.sock.close()


class TcpPool:
    """Idle connections to one nsqd, and every connection in use (to close them)."""

    def __init__(self, address: str, size: int) -> None:
        self.address = address
        self.size = size
        self._idle: list[TcpConn] = []
        self._all: set[TcpConn] = set()
        self._lock = threading.Lock()
        self.closed = False

    def checkout(self, deadline: float, connect_timeout: float) -> TcpConn:
        """An idle connection still open, or a new one within both budgets."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if conn.usable():
                return conn
            self.discard(conn)
        sock = connect(self.address, min(connect_timeout, deadline - _monotonic()))
        conn = TcpConn(sock)
        with self._lock:
            if self.closed:
                conn.close()
                raise ConnectionAbortedError("client is closed")
            self._all.add(conn)
        return conn

    def checkin(self, conn: TcpConn) -> None:
        conn.idle_since = _monotonic()
        with self._lock:
            if not self.closed and len(self._idle) < self.size:
                self._idle.append(conn)
                return
            self._all.discard(conn)
        conn.close()

    def discard(self, conn: TcpConn) -> None:
        with self._lock:
            self._all.discard(conn)
        conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            conns, self._all, self._idle = list(self._all), set(), []
        for conn in conns:
            conn.close()


class HttpPoster:
    """``POST`` to one nsqd's HTTP port, one connection per request (tracked to close)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.closed = False

    def post(self, path: str, body: bytes, deadline: float, connect_timeout: float) -> None:
        """Send the request and check nsqd's reply, all by ``deadline``."""
        sock = connect(self.address, min(connect_timeout, deadline - _monotonic()))
        with self._lock:
            if self.closed:
                sock.close()
                raise ConnectionAbortedError("client is closed")
            self._open.add(sock)
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(http_request(self.address, path, body))
            raw = bytearray()
            while not http_complete(raw):
                sock.settimeout(_left(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
            http_reply(bytes(raw))
        finally:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            socks = list(self._open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

