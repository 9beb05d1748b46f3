"""The ZooKeeper wrapper: kazoo behind deadlines, a session-following breaker, retries.

::

    zk = ZooKeeper("10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181", timeout=0.2)
    zk.create("/app/config", b"v1", makepath=True)
    data, stat = zk.get("/app/config")          # None when there is no node
    with zk.lock("/app/locks/job", timeout=1.0) as lease:
        lease.check()                            # raises once the lease may be lost

Every call goes through kazoo's async API and waits at most the call's remaining
deadline (kazoo's sync calls have no timeout). The session starts lazily with
``start_async()`` inside the first call's budget and keeps reconnecting in the
background with a pause of at most ``reconnect_max_delay``; kazoo's command retry is
off (the wrapper's retry decides, for idempotent operations only). While the session is
not CONNECTED every call is refused at once, before anything is queued (kazoo would
queue it and send it after the reconnect): the breaker is forced open on SUSPENDED and
LOST and reset on CONNECTED.

A write whose reply was lost or late may still be applied: its error says
"ambiguous". ``create(..., sequence=True)`` (or ``protected=True``) names the node with
this client's unique prefix (``_c_<uuid>-``, as Curator's protected mode), so a retry
finds the node an earlier attempt created instead of creating a second one.

Outcomes are results: ``get``/``exists``/``get_children`` return None and ``delete``
returns False for a missing node. kazoo's NodeExistsError, BadVersionError,
NotEmptyError, NoNodeError (missing parent), bad arguments and NoAuthError pass through
unmapped and never count against the breaker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from resilience.clients.zookeeper._common import ZooKeeperBase
from resilience.clients.zookeeper._session import Session

__all__ = ["Call", "Transaction", "ZooKeeper", "protected_name", "split_path"]

T = TypeVar("T")
_monotonic = time.monotonic
Watch = Callable[[Any], object]


class Call:
    """One attempt: the kazoo client and the attempt's deadline."""

    __slots__ = ("deadline", "kz", "session")

    def __init__(self, session: Session, kz: Any, deadline: float) -> None:
        self.session, self.kz, self.deadline = session, kz, deadline

    def wait(self, result: Any) -> Any:
        return self.session.wait(result, self.deadline)


def split_path(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name


def protected_name(path: str, prefix: str) -> str:
    """``/a/b`` -> ``/a/_c_<prefix>-b``: a name only this client (and attempt) uses."""
    parent, name = split_path(path)
    return f"{parent.rstrip('/')}/_c_{prefix}-{name}"


def find_protected(children: Sequence[str] | None, prefix: str) -> str | None:
    marker = f"_c_{prefix}-"
    for child in children or ():
        if child.startswith(marker):
            return child
    return None


def _dispatching(session: Session, watch: Watch | None) -> Watch | None:
    # kazoo runs watch callbacks on its own thread: hand them to ours.
    if watch is None:
        return None
    return lambda event: session.dispatcher.submit(lambda: watch(event))


class ZooKeeper(ZooKeeperBase):
    """A ZooKeeper client that never hangs; see the module docstring.

    Args:
        hosts: ``host:port`` members (a string with commas, or a list); default from
            RESILIENCE_ZOOKEEPER_HOSTS.
        name: a named instance: RESILIENCE_ZOOKEEPER_<NAME>_* variables apply.
        environ: the environment to read (``os.environ`` when None).
        events: the event bus to emit on (rejections, failures, retries, breaker and
            ``session`` state changes); a private silent one by default.
        breakers: a breaker registry to share (keyed by the hosts string).
        clock: time source of the pipeline and breakers (a fake clock in tests).
        randomize_hosts: shuffle the members before connecting (kazoo's default); False
            tries them in the order given.
        **options: any :class:`~resilience.clients.zookeeper.ZooKeeperOptions` field by
            its flat name (``timeout``, ``connect_timeout``, ``session_timeout``,
            ``chroot``, ``auth``, ``breaker_failure_rate``, ``retry_attempts``...).

    Raises:
        ConfigError: a bad argument or variable, named in the message.

    Construction opens nothing (no socket, no thread); the first call starts the
    session. Safe to share between threads; after a fork the child starts its own
    session and never touches the parent's.
    """

    # ---- the client contract -------------------------------------------------------

    def _attempt(self, session: Session, index: int, fn: Callable[[Any], T],
                 remaining: float, op: str) -> T:
        deadline = _monotonic() + remaining
        kz = session.ready(remaining)
        return fn(Call(session, kz, deadline))

    def _health_probe(self, index: int, timeout: float) -> None:
        # See ZooKeeperBase._probe_session: the session's state and one round trip.
        session = self._probe_session()
        session.wait(session.kz.exists_async("/"), _monotonic() + timeout)

    # ---- operations ----------------------------------------------------------------

    def get(self, path: str, *, watch: Watch | None = None,
            timeout: float | None = None) -> tuple[bytes, Any] | None:
        """``(data, stat)`` of the node, or None if there is none.

        ``watch(event)`` is called once on the next change (on the client's callback
        thread, never kazoo's); for a watch that lasts, see :meth:`watch_data`.
        """
        def fn(c: Call) -> tuple[bytes, Any] | None:
            from kazoo.exceptions import NoNodeError
            try:
                return c.wait(c.kz.get_async(path, _dispatching(c.session, watch)))  # type: ignore[no-any-return]
            except NoNodeError:
                return None
        return self._call("get", 0, fn, timeout)

    def exists(self, path: str, *, watch: Watch | None = None,
               timeout: float | None = None) -> Any:
        """The node's ``ZnodeStat``, or None if there is none (``watch`` as in get)."""
        return self._call("exists", 0, lambda c: c.wait(
            c.kz.exists_async(path, _dispatching(c.session, watch))), timeout)

    def get_children(self, path: str, *, watch: Watch | None = None,
                     timeout: float | None = None) -> list[str] | None:
        """The names of the node's children, or None if there is no node."""
        def fn(c: Call) -> list[str] | None:
            from kazoo.exceptions import NoNodeError
            try:
                return c.wait(c.kz.get_children_async(  # type: ignore[no-any-return]
                    path, _dispatching(c.session, watch)))
            except NoNodeError:
                return None
        return self._call("get_children", 0, fn, timeout)

    def create(self, path: str, value: bytes = b"", *, ephemeral: bool = False,
               sequence: bool = False, makepath: bool = False,
               protected: bool | None = None, timeout: float | None = None) -> str:
        """Create a node; its path (with the sequence number when ``sequence``).

        ``protected`` (default: ``sequence``) names the node ``_c_<unique>-<name>`` so
        that the create is safe to retry: a retry looks for its own node first. A
        plain create is not retried (a retry of an applied one would see
        NodeExistsError). Raises kazoo's NodeExistsError, or NoNodeError when the parent
        is missing and ``makepath`` is False (both pass through).
        """
        if protected is None:
            protected = sequence
        if not protected:
            return self._call("create", 0, lambda c: c.wait(c.kz.create_async(  # type: ignore[no-any-return]
                path, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath)),
                timeout)
        return self._call("create_protected", 0, self._protected_create(
            path, value, ephemeral, sequence, makepath), timeout)

    def _protected_create(self, path: str, value: bytes, ephemeral: bool, sequence: bool,
                          makepath: bool, prefix: str | None = None) -> Callable[[Call], str]:
        prefix = prefix or f"{self.client_prefix}{uuid.uuid4().hex[:8]}"
        name = protected_name(path, prefix)
        parent, _ = split_path(name)
        sent = [False]

        def fn(c: Call) -> str:
            from kazoo.exceptions import NodeExistsError, NoNodeError
            if sent[0]:  # an earlier attempt may have created it: find it first
                try:
                    found = find_protected(c.wait(c.kz.get_children_async(parent)), prefix)
                except NoNodeError:
                    found = None
                if found is not None:
                    return f"{parent.rstrip('/')}/{found}"
            sent[0] = True
            try:
                return c.wait(c.kz.create_async(  # type: ignore[no-any-return]
                    name, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath))
            except NodeExistsError:
                if sequence:
                    raise
                return name  # the name is ours alone: an earlier attempt made it
        return fn

    def set(self, path: str, value: bytes, version: int = -1, *,
            timeout: float | None = None) -> Any:
        """Set the node's data; its new ``ZnodeStat``. With ``version`` (a compare and
        set) raises kazoo's BadVersionError on a conflict and is never retried."""
        op = "set" if version == -1 else "set_versioned"
        return self._call(op, 0, lambda c: c.wait(c.kz.set_async(path, value, version)),
                          timeout)

    def delete(self, path: str, version: int = -1, *, timeout: float | None = None) -> bool:
        """Delete the node: True, or False if there was none. Raises kazoo's
        NotEmptyError (children) or BadVersionError (``version`` not current)."""
        def fn(c: Call) -> bool:
            from kazoo.exceptions import NoNodeError
            try:
                c.wait(c.kz.delete_async(path, version))
            except NoNodeError:
                return False
            return True
        return self._call("delete" if version == -1 else "delete_versioned", 0, fn, timeout)

    def ensure_path(self, path: str, *, timeout: float | None = None) -> bool:
        """Create the node and its parents where missing (True)."""
        return self._call("ensure_path", 0,
                          lambda c: bool(c.wait(c.kz.ensure_path_async(path))), timeout)

    def transaction(self) -> Transaction:
        """A transaction to fill and ``commit(timeout=...)``: all or nothing."""
        return Transaction(self)

    def run(self, op: str, fn: Callable[[Any], Any], *, timeout: float | None = None) -> Any:
        """Run ``fn(kazoo_client)``, which must return a kazoo ``IAsyncResult`` (any
        ``*_async`` method); waits for it within the deadline. ``op`` names the operation
        for errors, events and the idempotency table (unknown names are never retried)."""
        return self._call(op, 0, lambda c: c.wait(fn(c.kz)), timeout)

    # ---- recipes (resilience.clients.zookeeper._recipes) ---------------------------

    def lock(self, path: str, *, timeout: float, identifier: str = "") -> Any:
        """A lock on ``path``: ``with zk.lock(path, timeout=1.0) as lease:``; see
        :class:`~resilience.clients.zookeeper.Lock`."""
        from resilience.clients.zookeeper._recipes import Lock

        return Lock(self, path, timeout=timeout, identifier=identifier)

    def rw_lock(self, path: str, *, identifier: str = "") -> Any:
        """A read/write lock: ``rw.read(timeout=...)`` / ``rw.write(timeout=...)``; see
        :class:`~resilience.clients.zookeeper.ReadWriteLock`."""
        from resilience.clients.zookeeper._recipes import ReadWriteLock

        return ReadWriteLock(self, path, identifier)

    def semaphore(self, path: str, max_leases: int, *, timeout: float,
                  identifier: str = "") -> Any:
        """At most ``max_leases`` holders; see :class:`~resilience.clients.zookeeper.Semaphore`."""
        from resilience.clients.zookeeper._recipes import Semaphore

        return Semaphore(self, path, max_leases, timeout=timeout, identifier=identifier)

    def election(self, path: str, identifier: str = "") -> Any:
        """Leader election on ``path``; see :class:`~resilience.clients.zookeeper.Election`."""
        from resilience.clients.zookeeper._recipes import Election

        return Election(self, path, identifier=identifier)

    def id_generator(self, path: str = "/resilience/id-workers", **kwargs: Any) -> Any:
        """k-sortable 64-bit IDs; see :class:`~resilience.clients.zookeeper.IdGenerator`."""
        from resilience.clients.zookeeper._ids import IdGenerator

        return IdGenerator(self, path, **kwargs)

    def watch_data(self, path: str, fn: Callable[[bytes | None, Any], object]) -> Any:
        """Call ``fn(data, stat)`` now and on every change; see :class:`DataWatch`."""
        from resilience.clients.zookeeper._watches import DataWatch

        return DataWatch(self, path, fn)

    def watch_children(self, path: str, fn: Callable[[list[str] | None], object]) -> Any:
        """Call ``fn(children)`` now and on every change; see :class:`ChildrenWatch`."""
        from resilience.clients.zookeeper._watches import ChildrenWatch

        return ChildrenWatch(self, path, fn)


class Transaction:
    """Operations committed atomically by :meth:`commit` (kazoo's TransactionRequest,
    built on the session when committed). Never retried."""

    def __init__(self, zk: ZooKeeper) -> None:
        self._zk = zk
        self._ops: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def create(self, path: str, value: bytes = b"", *, ephemeral: bool = False,
               sequence: bool = False) -> Transaction:
        self._ops.append(("create", (path, value), {"ephemeral": ephemeral,
                                                     "sequence": sequence}))
        return self

    def set_data(self, path: str, value: bytes, version: int = -1) -> Transaction:
        self._ops.append(("set_data", (path, value, version), {}))
        return self

    def delete(self, path: str, version: int = -1) -> Transaction:
        self._ops.append(("delete", (path, version), {}))
        return self

    def check(self, path: str, version: int) -> Transaction:
        self._ops.append(("check", (path, version), {}))
        return self

    def build(self, kz: Any) -> Any:
        request = kz.transaction()
        for name, args, kwargs in self._ops:
            getattr(request, name)(*args, **kwargs)
        return request

    def commit(self, *, timeout: float | None = None) -> list[Any]:
        """The result of each operation (kazoo's: a path, a stat, True, or an exception
        such as RolledBackError when the transaction failed)."""
        return self._zk._call("transaction", 0,
                              lambda c: c.wait(self.build(c.kz).commit_async()), timeout)
