"""urllib3 pools that keep the deadline: what both search drivers send their requests through.

elasticsearch-py (elastic-transport's ``Urllib3HttpNode``) and opensearch-py
(``Urllib3HttpConnection``) each keep one urllib3 ``HTTPConnectionPool`` per node as
``.pool``. :func:`harden_pool` swaps that pool's class for one that closes three gaps:

- **Every request is bounded by its attempt's deadline.** The pool ignores the timeout
  the driver passes and uses ``remaining`` (a new connection's connect at most
  ``min(connect_timeout, remaining)``), where ``remaining`` comes from the deadline the
  attempt stores for its thread (:data:`._bound.BOUND`, set while an attempt runs), so
  no call passes ``None`` and no ``options()`` client is built per call.
- **The read timeout becomes a total.** urllib3's read timeout applies to each
  ``recv``, so a reply that trickles in one byte at a time never times out. Each socket
  is a :class:`DeadlineSocket`, which sets its timeout to what is left of the deadline
  before every receive and send: the reply is cut at the deadline.
- **The checkout is bounded.** urllib3's pool blocks without bound (``block=True``, no
  ``pool_timeout``) when every connection of the node is busy. Here it waits at most
  ``min(pool_timeout, remaining)`` (0 by default: a full pool fails at once with
  ``EmptyPoolError``, which the client turns into ``BulkheadFullError``).

The pool also remembers its live sockets, so :func:`shutdown_pool` wakes calls that are
blocked on a socket when the client is closed.

Plain-HTTP sockets only: over TLS the ``ssl`` module owns the socket's reads, so a
trickling TLS reply is bounded per read (by the remaining deadline at the request's
start), not as a total.
"""

from __future__ import annotations

import contextlib
import socket
import time
import weakref
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.timeout import Timeout

from resilience.clients._hedge import CANCEL, shutdown
from resilience.clients._search._bound import BOUND

__all__ = ["DeadlineSocket", "harden_pool", "make_cancellable", "shutdown_pool"]

_monotonic = time.monotonic
_MIN = 0.001  # a timeout of 0 would make the socket non-blocking
_SLACK = 0.002  # an armed timeout this close to the deadline is kept
_new = object.__new__


class DeadlineSocket(socket.socket):
    """A socket whose every receive and send ends by the request's deadline (if one is set).

    A socket timeout applies to each operation from its start, so an operation starting
    now ends by ``now + timeout``; the socket re-arms only when that is more than 2 ms
    from the deadline. urllib3 arms the read timeout at what is left of the deadline
    just before it reads, so on the healthy path a receive costs a clock read, a
    ``gettimeout()`` and a comparison, not a syscall. The base class's methods are
    called directly, not through ``super()`` (which builds a proxy object per call).
    """

    __slots__ = ()

    def _bound(self) -> None:
        at = BOUND.at
        if at is not None:
            left = at - _monotonic()
            armed = self.gettimeout()
            # Re-armed unless the armed timeout ends within 2 ms of the deadline (which
            # a spent deadline never is: a timeout is never <= 0 here). One chained
            # comparison: 1.7k instructions a request fewer than the two tests it
            # replaced (callgrind). Inlining this check into recv_into and sendall saved
            # nothing measurable (callgrind, same hash seed), so it stays one method.
            if armed is None or not left - _SLACK <= armed <= left + _SLACK:
                if left <= 0.0:
                    raise TimeoutError("deadline reached while reading the reply")
                _settimeout(self, left)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._bound()
        return _recv_into(self, buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound()
        return _recv(self, bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bound()
        _sendall(self, data, flags)


_settimeout = socket.socket.settimeout
_recv_into = socket.socket.recv_into
_recv = socket.socket.recv
_sendall = socket.socket.sendall


def _deadline_socket(sock: socket.socket, live: weakref.WeakSet[socket.socket] | None
                     ) -> socket.socket:
    timeout = sock.gettimeout()
    wrapped = DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    wrapped.settimeout(timeout)
    if live is not None:
        live.add(wrapped)
    return wrapped


def _cap_connect(conn: Any) -> None:
    # The request's timeout is what is left of the deadline; the connect gets at most
    # connect_timeout of it (only a new connection pays this, not the pooled ones).
    cap = conn._resilience_connect
    if cap is not None and (not isinstance(conn.timeout, int | float) or conn.timeout > cap):
        conn.timeout = cap


class _HTTPConnection(HTTPConnection):
    _resilience_live: weakref.WeakSet[socket.socket] | None = None
    _resilience_connect: float | None = None

    def _new_conn(self) -> socket.socket:
        _cap_connect(self)
        return _deadline_socket(super()._new_conn(), self._resilience_live)


class _HTTPSConnection(HTTPSConnection):
    _resilience_live: weakref.WeakSet[socket.socket] | None = None
    _resilience_connect: float | None = None

    def _new_conn(self) -> socket.socket:
        _cap_connect(self)
        # Registered so close() can shut it down; TLS then reads through its own object.
        sock = super()._new_conn()
        if self._resilience_live is not None:
            self._resilience_live.add(sock)
        return sock


class _Cancellable:
    """A connection whose request a hedged read can cancel from another thread: when
    it waits for the reply, it binds its socket to the attempt's token (``CANCEL``),
    which shuts the socket down if the other attempt wins."""

    sock: Any

    def getresponse(self, *args: Any, **kw: Any) -> Any:
        token = CANCEL.get()
        if token is not None:
            sock = self.sock
            token.bind(lambda: shutdown(sock))
        return super().getresponse(*args, **kw)  # type: ignore[misc]


class _CancellableHTTPConnection(_Cancellable, _HTTPConnection):
    pass


class _CancellableHTTPSConnection(_Cancellable, _HTTPSConnection):
    pass


def make_cancellable(pool: HTTPConnectionPool) -> None:
    """Let hedged reads cancel this (hardened) pool's requests; only clients with
    hedging on pay the context-variable read per request."""
    https = isinstance(pool, HTTPSConnectionPool)
    pool.ConnectionCls = (
        _CancellableHTTPSConnection if https else _CancellableHTTPConnection)


class _Left(Timeout):
    """A request's Timeout built by :meth:`_PoolMixin._get_timeout`: connect and read
    both what is left of the deadline, no total.

    ``connect_timeout`` and ``read_timeout`` are plain attributes here, not Timeout's
    properties (three frames a request that only return the value with no total), and
    the connect clock is not started: with no total, nothing asks for its duration.
    """

    connect_timeout: float = 0.0
    read_timeout: float = 0.0

    def start_connect(self) -> float:
        return 0.0


class _PoolMixin:
    """The bounded checkout and the deadline-derived timeout of every request."""

    _resilience_connect: float
    _resilience_wait: float
    _resilience_default: float
    _resilience_live: weakref.WeakSet[socket.socket]

    # No urlopen override (it cost a frame and a copy of every keyword per request):
    # urllib3's urlopen asks _get_timeout for the request's Timeout and _get_conn for a
    # connection, and both answer from the deadline.

    def _get_timeout(self, timeout: Any) -> Timeout:
        """The request's timeout: what is left of the deadline (the driver's own request
        timeout is ignored, so no call waits past the deadline nor passes ``None``)."""
        if type(timeout) is _Left:
            return timeout  # urlopen's, handed on to _make_request (used once there)
        # Built without Timeout's checks of three values (a float of at least 1 ms
        # passes them by construction): two validated Timeouts cost ~12k instructions a
        # request (callgrind). What is left is computed here and in _get_conn without a
        # helper's frame: a _left() method called by both cost 2.7-3.4k instructions a
        # search more (callgrind, hash seeds 0 and 1, one server).
        at = BOUND.at
        left = self._resilience_default if at is None else max(at - _monotonic(), _MIN)
        bounded = _new(_Left)
        bounded._connect = bounded._read = bounded.connect_timeout = bounded.read_timeout = left
        bounded.total = None
        bounded._start_connect = None
        return bounded

    def _get_conn(self, timeout: float | None = None) -> Any:
        """A pooled connection, waiting at most ``min(pool_timeout, remaining)`` when all
        are busy (urllib3 would wait without bound); a caller's own ``pool_timeout`` is
        capped by what is left too."""
        wait = self._resilience_wait if timeout is None else timeout
        at = BOUND.at
        left = self._resilience_default if at is None else max(at - _monotonic(), _MIN)
        return HTTPConnectionPool._get_conn(self, min(wait, left))  # type: ignore[arg-type]

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        conn._resilience_live = self._resilience_live
        conn._resilience_connect = self._resilience_connect
        return conn


class _HTTPPool(_PoolMixin, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_PoolMixin, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def harden_pool(pool: HTTPConnectionPool, *, connect_timeout: float, pool_timeout: float,
                default_timeout: float) -> None:
    """Make a driver's urllib3 pool keep the deadline (see the module docstring).

    Args:
        pool: the node's pool, still unused (built by the driver, no connection yet).
        connect_timeout: cap of one connection attempt, in seconds.
        pool_timeout: longest wait for a free connection when all are busy (0: none).
        default_timeout: the timeout of a request made outside any deadline.
    """
    pool.__class__ = _HTTPSPool if isinstance(pool, HTTPSConnectionPool) else _HTTPPool
    pool.block = True  # at most maxsize connections; past that, wait (bounded) or reject
    hardened: Any = pool
    hardened._resilience_connect = connect_timeout
    hardened._resilience_wait = pool_timeout
    hardened._resilience_default = default_timeout
    hardened._resilience_live = weakref.WeakSet()


def shutdown_pool(pool: HTTPConnectionPool) -> None:
    """Close the pool and shut down every socket it opened: blocked calls wake at once."""
    live: weakref.WeakSet[socket.socket] | None = getattr(pool, "_resilience_live", None)
    for sock in list(live or ()):
        with contextlib.suppress(OSError):  # already closed or never connected
            sock.shutdown(socket.SHUT_RDWR)
    pool.close()
