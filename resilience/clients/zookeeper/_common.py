"""What the sync and asyncio ZooKeeper clients share on top of the client base.

The endpoint is the ensemble session: one kazoo client talks to one member at a time
and moves to another by itself, so the whole ``hosts`` string is one endpoint with one
breaker. The breaker follows the session: forced open while it is SUSPENDED or LOST
(calls are rejected in microseconds, nothing is queued), reset when it is CONNECTED
again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any, TypeVar

from resilience.clients._base import ClientBase
from resilience.clients._errormap import ErrorMap, IdempotencyTable, idempotency_table
from resilience.clients.zookeeper._options import ZooKeeperOptions
from resilience.clients.zookeeper._session import (
    CONNECTED,
    LOST,
    NotConnectedError,
    Session,
)
from resilience.core.breaker import BreakerRegistry
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
)

__all__ = ["IDEMPOTENT", "WRITES", "SessionListener", "ZooKeeperBase", "error_map"]

D = TypeVar("D")
SERVICE = "zookeeper"

IDEMPOTENT: IdempotencyTable = idempotency_table({
    "get": True,
    "exists": True,
    "get_children": True,
    "ensure_path": True,       # an existing node is success
    "set": True,               # version -1: last writer wins (a versioned set is not)
    "delete": True,            # a repeat finds no node: reported as False, same state
    "create_protected": True,  # a retry first looks for its own node (protected name)
    # Not idempotent: a retry after a lost reply may act twice or report a false outcome.
    "create": False,           # a retry of an applied create sees NodeExistsError
    "set_versioned": False,    # a retry of an applied set sees BadVersionError
    "delete_versioned": False,
    "transaction": False,      # atomic, but a retry of an applied one fails its checks
})
"""Which operations a retry may repeat (docs/zookeeper.md#idempotency)."""

WRITES = frozenset({"ensure_path", "set", "delete", "create", "create_protected",
                    "set_versioned", "delete_versioned", "transaction"})
"""Operations whose timed-out attempt may still be applied later (ambiguous)."""

SessionListener = Callable[[str, str], object]


@cache
def error_map() -> ErrorMap:
    """kazoo exception -> resilience error, most specific first.

    A rule to None passes the driver's exception through, not counted against the
    breaker: application outcomes a caller handles (NodeExistsError, BadVersionError,
    NotEmptyError, NoNodeError of a parent) and caller mistakes (bad arguments, no
    permission).
    """
    from kazoo import exceptions as ke
    from kazoo.handlers.threading import KazooTimeoutError

    return ErrorMap([
        (NotConnectedError, BackendUnavailableError, "not connected"),
        ((ke.NoNodeError, ke.NodeExistsError, ke.BadVersionError, ke.NotEmptyError,
          ke.NoChildrenForEphemeralsError, ke.BadArgumentsError, ke.InvalidCallbackError,
          ke.NoAuthError, ke.AuthFailedError, ke.InvalidACLError, ke.QuotaExceededError,
          TypeError, ValueError), None, "outcome or caller error"),
        (ke.ConnectionClosedError, BackendUnavailableError, "client is closed"),
        (ke.SessionExpiredError, BackendUnavailableError, "session expired"),
        ((KazooTimeoutError, TimeoutError), BackendTimeoutError, "timed out"),
        ((ke.OperationTimeoutError, ke.RequestTimeoutError), BackendTimeoutError,
         "server timed out"),
        ((ke.ConnectionLoss, ke.ConnectionDropped), BackendUnavailableError,
         "connection lost"),
        ((ke.ThrottledOpError, ke.SessionMovedError, ke.UnknownSessionError,
          ke.NotReadOnlyCallError), BackendUnavailableError, "server refused"),
        ((ke.MarshallingError, ke.SystemZookeeperError, ke.RuntimeInconsistency,
          ke.DataInconsistency, ke.UnimplementedError, ke.APIError), BackendProtocolError,
         "protocol error"),
        (ke.KazooException, BackendError, "zookeeper error"),
        (OSError, BackendUnavailableError, "socket error"),
    ])


def parse_hosts(hosts: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if hosts is None:
        return None
    items = hosts.split(",") if isinstance(hosts, str) else list(hosts)
    parsed = tuple(h.strip() for h in items if h.strip())
    if not parsed:
        raise ConfigError("hosts: expected at least one host:port")
    return parsed


class ZooKeeperBase(ClientBase[Session]):
    """What the sync and async clients share: the session, its state and listeners.

    See :class:`~resilience.clients.zookeeper.ZooKeeper` for the arguments.
    """

    service = SERVICE
    options_class = ZooKeeperOptions
    idempotent = IDEMPOTENT
    driver_modules = ("kazoo",)
    extra = "zookeeper"
    options: ZooKeeperOptions

    def __init__(
        self,
        hosts: str | Iterable[str] | None = None,
        *,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        events: EventBus | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        randomize_hosts: bool = True,
        **options: Any,
    ) -> None:
        self._randomize_hosts = randomize_hosts
        opts: ZooKeeperOptions = self._resolve(
            name, environ, {"hosts": parse_hosts(hosts), **options})
        chroot = opts.chroot.rstrip("/")
        if opts.chroot and not opts.chroot.startswith("/"):
            raise ConfigError(f"chroot={opts.chroot!r}: expected a path such as /app")
        if opts.auth and ":" not in opts.auth:
            raise ConfigError("auth: expected scheme:credential (value not shown)")
        self._hosts = ",".join(opts.hosts) + chroot
        self._listeners: list[SessionListener] = []
        self.client_prefix = uuid.uuid4().hex  # protected names of this client's creates
        self.ready_paths: set[str] = set()  # lock parents known to exist
        super().__init__([",".join(opts.hosts)], opts, events=events, breakers=breakers,
                         clock=clock)

    # ---- the client contract -------------------------------------------------------

    def _error_map(self) -> ErrorMap:
        return error_map()

    def _build_driver(self) -> Session:
        return Session(self._hosts, self.options, self._session_changed,
                       randomize_hosts=self._randomize_hosts)

    def _close_driver(self, session: Session) -> None:
        session.close()

    def _failure(self, exc: Exception, op: str, index: int) -> BaseException:
        err = super()._failure(exc, op, index)
        if (op in WRITES and isinstance(err, (BackendTimeoutError, BackendUnavailableError))
                and not isinstance(exc, NotConnectedError)
                and err.detail not in ("client is closed",)):
            # Sent, then the reply was lost or late: kazoo does not cancel a request,
            # so the write may have been applied (or may still be).
            err.detail = f"{err.detail}; ambiguous: the write may have been applied"
        return err

    # ---- health probe --------------------------------------------------------------

    # The breaker's OPEN state comes from calls that failed while the session still
    # said CONNECTED (a frozen or overloaded member: kazoo notices only after 2/3 of
    # the session timeout, or never under steady traffic). SUSPENDED/LOST force it
    # open instead (no probing: CONNECTED again resets it). So the probe asks the
    # session itself: CONNECTED, and a round trip on it (``exists("/")``, the cheapest
    # read; no user data, no new connection) answered within the probe's timeout. A
    # timed-out probe counts as a stalled request, which moves kazoo to another member
    # as a user call's would (Session.stalled).

    def _probe_session(self) -> Session:
        session = self._driver.peek()
        if session is None or session.state != CONNECTED:
            raise NotConnectedError(f"session {self.state.lower()}: not connected")
        return session

    # ---- session state ---------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The driver session of this process (built, not started, on first access)."""
        return self._driver.get()

    @property
    def state(self) -> str:
        """``NEW`` (never connected), ``CONNECTED``, ``SUSPENDED`` or ``LOST``."""
        session = self._driver.peek()
        return "NEW" if session is None else session.state

    def add_session_listener(self, fn: SessionListener) -> Callable[[], None]:
        """Call ``fn(old_state, new_state)`` on every session change; returns unsubscribe.

        States: ``CONNECTED``, ``SUSPENDED`` (connection lost: locks and leases are no
        longer safe), ``LOST`` (the session is gone: ephemeral nodes, watches and locks
        with it; also declared by this client ``session_timeout`` after SUSPENDED, since
        kazoo only learns of an expiry when it reconnects). Runs on the client's
        callback thread, never on kazoo's; it may block only that thread.
        """
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _session_changed(self, old: str, new: str) -> None:
        # Dispatcher thread: the breaker follows the session, then events and listeners.
        breaker = self._breakers[0]
        if new == "CONNECTED":
            breaker.reset()
        elif old == "CONNECTED" or new == LOST:
            breaker.force_open()
        if self.events.listeners:
            self.events.emit("session", self.service, "session", self._endpoints[0],
                             old_state=old, new_state=new)
        for fn in list(self._listeners):
            fn(old, new)
