"""One memcached node: a pool of pymemcache clients whose sockets obey a deadline.

How a call's budget reaches the socket
--------------------------------------
pymemcache keeps one socket per ``Client`` and reads it with ``sock.recv`` in a loop
(``_readline``/``_readvalue``), so a per-socket timeout alone bounds each ``recv`` but not
the call: a reply that trickles one byte at a time inside the timeout (slow drip) would
run on. The sockets here are :class:`DeadlineSocket`, handed to pymemcache through its
``socket_module`` argument. Before each call the node stores the call's absolute
``deadline`` on the socket, which works out the span of clock readings in which the
armed socket timeout fits the remaining budget (within ``_SLACK``); every
``recv``/``sendall`` reads the clock and, only outside that span, raises (deadline
passed) or re-arms the timeout. On the healthy path the armed timeout already fits, so
a call costs one clock read and one comparison per ``recv``, not a ``settimeout``
syscall.

Connecting happens before the driver method runs, with ``min(connect_timeout,
remaining)`` read when pymemcache arms the socket (after its ``getaddrinfo``, which can
take milliseconds on a process's first connect); pymemcache then finds the socket
connected.

A client whose call raised anything is closed and dropped, never returned to the pool:
after a timeout its stream may still deliver the old reply, which the next call would
read as its own.

Stale connections: when memcached is killed and restarted on the same port, the idle
clients still hold sockets to the dead process; each fails at once (reset, broken
pipe, end of stream) although the node is healthy again. :meth:`NodePool.stale` tells
such a failure apart (a connection error, not a timeout, on a client that was idle in
the pool before the call began) and closes every idle client of the node with it: they
all date from before the failure, so one probe, not one per pooled connection, finds
the node's real state.
"""

from __future__ import annotations

import contextlib
import socket
import time
import types
import weakref
from typing import Any

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheUnexpectedCloseError

__all__ = ["DeadlineSocket", "NodePool"]

# Re-arm the socket timeout only when it is off the remaining budget by more than this.
_SLACK = 0.002
_monotonic = time.monotonic
_INF = float("inf")
_TINY = 1e-9  # a remaining budget must be above this to use the armed timeout
# A failure that says the connection is gone, not that the server is slow.
_CONNECTION_LOST = (ConnectionError, MemcacheUnexpectedCloseError)


class DeadlineSocket(socket.socket):
    """A socket whose reads and writes end by ``deadline`` (absolute, monotonic).

    ``deadline`` is infinite until set (a plain attribute: the pool's checkout writes
    it, nothing else is needed per call); ``armed`` is the socket timeout currently set
    (seconds), and ``fits_from``/``fits_until`` the span of remaining budgets it fits
    within ``_SLACK`` (worked out when it is armed, not per call). A
    ``recv``/``sendall`` whose remaining budget is inside that span goes straight to
    the socket; outside it the slow path raises TimeoutError once the deadline has
    passed, or re-arms the timeout to what remains.
    """

    __slots__ = ("armed", "deadline", "fits_from", "fits_until")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = _INF
        self.armed: float | None = None
        self.fits_from = self.fits_until = _INF  # nothing fits until armed

    def settimeout(self, value: float | None) -> None:
        _settimeout(self, value)
        self.armed = value
        if value is None:
            self.fits_from = self.fits_until = _INF
        else:
            # remaining fits ``value`` within _SLACK, and the deadline has not passed.
            self.fits_from = max(value - _SLACK, _TINY)
            self.fits_until = value + _SLACK

    def set_deadline(self, deadline: float) -> None:
        """Make every later read and write end by ``deadline`` (monotonic seconds)."""
        self.deadline = deadline

    # recv and sendall run on every call: one clock read and one chained comparison
    # on the healthy path (a Python call and super() lookup are a measurable share of a
    # 25 µs loopback round trip, so the slow path is a separate method).

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not self.fits_from <= self.deadline - _monotonic() <= self.fits_until:
            self._rearm()
        return _recv(self, bufsize, flags) if flags else _recv(self, bufsize)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if not self.fits_from <= self.deadline - _monotonic() <= self.fits_until:
            self._rearm()
        if flags:
            _sendall(self, data, flags)
        else:
            _sendall(self, data)

    def _rearm(self) -> None:
        # Outside the span: no deadline (the armed timeout alone applies), the deadline
        # has passed, or the armed timeout no longer fits what remains (re-armed: one
        # settimeout, no I/O).
        remaining = self.deadline - _monotonic()
        if remaining == _INF:
            return
        if remaining <= 0:
            raise TimeoutError("deadline reached")
        armed = self.armed
        if armed is None or not remaining - _SLACK <= armed <= remaining + _SLACK:
            self.settimeout(remaining)


_settimeout = socket.socket.settimeout
_recv = socket.socket.recv
_sendall = socket.socket.sendall


def _socket_module() -> types.ModuleType:
    """A copy of :mod:`socket` whose ``socket`` class is :class:`DeadlineSocket`."""
    module = types.ModuleType("resilience_deadline_socket")
    module.__dict__.update(socket.__dict__)
    module.socket = DeadlineSocket  # type: ignore[attr-defined]
    return module


SOCKET_MODULE = _socket_module()


class _Client(Client):  # type: ignore[misc]  # pymemcache has no type hints
    """pymemcache's ``Client`` whose connect timeout is what remains of a deadline.

    pymemcache reads ``connect_timeout`` when it arms the new socket, after resolving
    the address: reading the remaining budget only then keeps the connect inside the
    call's deadline even when that resolution was slow.
    """

    connect_deadline = _INF
    _connect_cap: float | None = None

    @property
    def connect_timeout(self) -> float | None:
        cap, deadline = self._connect_cap, self.connect_deadline
        if deadline == _INF:
            return cap
        remaining = max(deadline - _monotonic(), 1e-6)  # 0 would mean non-blocking
        return remaining if cap is None or remaining < cap else cap

    @connect_timeout.setter
    def connect_timeout(self, value: float | None) -> None:
        self._connect_cap = value


class NodePool:
    """Idle pymemcache clients of one node, checked out one per call.

    A checked-out client is never shared. The sync client's attempt is the checkout
    (the hot path, no frame of its own; resilience/clients/memcache/_sync.py): it pops
    ``idle`` and stores the call's deadline on the client's socket (``sock.deadline``;
    an idle client always holds a connected, armed socket), or, with none idle,
    :meth:`connect`s a new one (the bulkhead, not the pool, limits concurrency).
    :meth:`checkin` keeps at most ``size`` idle clients (the attempt inlines it on
    success: a change to it must follow there). ``list.pop``/``append`` are atomic under
    the GIL, so the pool takes no lock. In-flight clients are tracked so ``close()`` can
    shut their sockets down, waking any call blocked on them.

    Args:
        host: node host (an IP address avoids an unbounded DNS lookup).
        port: node port.
        size: idle clients kept.
        client_kwargs: extra ``pymemcache.client.base.Client`` arguments (serde, ...).
    """

    __slots__ = ("_all", "_kwargs", "_server", "closed", "idle", "size")

    def __init__(self, host: str, port: int, size: int, client_kwargs: dict[str, Any]) -> None:
        self._server = (host, port)
        self.size = size
        self._kwargs = client_kwargs
        self.idle: list[Client] = []  # atomic pop/append: no lock
        self._all: weakref.WeakSet[Client] = weakref.WeakSet()
        self.closed = False

    def _connect(self, deadline: float, connect_timeout: float) -> Client:
        client = _Client(
            self._server,
            connect_timeout=connect_timeout,
            timeout=connect_timeout,
            socket_module=SOCKET_MODULE,
            default_noreply=False,
            **self._kwargs,
        )
        self._all.add(client)
        client.born = _monotonic()  # for stale(): made during this call, not pooled
        remaining = deadline - _monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline reached before connecting")
        client.connect_deadline = deadline
        client.timeout = remaining
        try:
            client._connect()
        except BaseException:
            self.discard(client)
            raise
        if self.closed:  # close() ran while we connected: do not leak the socket
            self.discard(client)
            raise ConnectionAbortedError("client closed while connecting")
        client.sock.deadline = deadline
        return client

    def connect(self, deadline: float, connect_timeout: float) -> Client:
        """A new, connected client whose socket ends its I/O by ``deadline``.

        Raises:
            TimeoutError, OSError: connecting failed (the client is discarded).
        """
        return self._connect(deadline, connect_timeout)

    def stale(self, client: Client, exc: BaseException, start: float) -> bool:
        """Whether ``exc`` from ``client`` says the pooled connection was already dead.

        True for a connection error (reset, broken pipe, closed by the server; not a
        timeout) on a client made before ``start`` (taken from the pool). Then every idle
        client of the node is closed too: they are as old, so as likely dead.
        """
        if (self.closed or not isinstance(exc, _CONNECTION_LOST)
                or getattr(client, "born", start) >= start):
            return False
        idle, self.idle = self.idle, []
        for other in idle:
            other.close()
        return True

    def checkin(self, client: Client) -> None:
        """Return a client whose call succeeded; it is kept if there is room."""
        if not self.closed and client.sock is not None and len(self.idle) < self.size:
            self.idle.append(client)
        else:
            client.close()

    def discard(self, client: Client) -> None:
        """Close and forget a client whose call failed (its stream may be out of step)."""
        client.close()

    def close(self) -> None:
        """Close idle clients and shut down in-flight sockets so blocked calls wake."""
        self.closed = True
        idle, self.idle = self.idle, []
        for client in idle:
            client.close()
        for client in list(self._all):
            sock = client.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed or never connected
                    sock.shutdown(socket.SHUT_RDWR)

    @property
    def idle_count(self) -> int:
        """Idle clients held (for tests and stats)."""
        return len(self.idle)

    @property
    def open_count(self) -> int:
        """Clients alive with an open socket (idle or in use), for leak tests."""
        return sum(1 for c in list(self._all) if c.sock is not None)
