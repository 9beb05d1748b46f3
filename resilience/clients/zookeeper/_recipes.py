"""Lock and leader election as leases: bounded, and honest about losing them.

Theory of operation
-------------------
The classic ZooKeeper lock, on the wrapper's bounded calls (kazoo's ``Lock`` restarts
its timeout on every wake-up, blocks while SUSPENDED and can leave its node behind):

1. each contender creates an ephemeral sequential node ``<path>/_c_<unique>-lock-N``
   (a protected name, so a retried create finds its own node instead of making a
   second one);
2. the lowest sequence number holds the lock; every other contender watches only the
   node just before its own and waits for it to go (no herd);
3. the whole acquisition, every request and every wait, is inside one deadline
   (``timeout``): past it, ``LockTimeout`` (contention) or the call's error.

A failed or abandoned acquire removes its node in the background (a delete, or a search
by its unique prefix when the create's outcome is unknown), retried on the next
reconnect of the same session; the caller does not wait for it.

A held lock is a :class:`Lease`. ``lease.valid`` is True while the session that created
the node is CONNECTED and has not been disconnected since. It turns False the moment
kazoo reports SUSPENDED (after 2/3 of the session timeout without a reply), while the
server expires the session, and lets another client take the lock, only at the full
session timeout: a holder that checks the lease stops before anyone else starts. Once
False it stays False (release and acquire again). A lease is not a fence: a holder
paused between ``check()`` and its write (GC, swap) may still write late; pass
``lease.zxid`` to a store that can reject stale writers if that matters.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilience.clients.zookeeper._session import CONNECTED, Session
from resilience.core.deadline import deadline as deadline_scope
from resilience.errors import BackendUnavailableError, ResilienceError

if TYPE_CHECKING:
    from resilience.clients.zookeeper._sync import ZooKeeper

__all__ = ["Election", "Lease", "LeaseLostError", "Lock", "LockTimeout", "ReadLock",
           "ReadWriteLock", "Semaphore", "WriteLock", "discard_node"]

_monotonic = time.monotonic
_SLICE = 0.05  # a waiting contender looks at the session state this often


class LockTimeout(ResilienceError, TimeoutError):
    """The lock was held by others for the whole timeout (contention, not a failure)."""


class LeaseLostError(BackendUnavailableError):
    """The lease may be held by someone else now: stop the work it guards."""


def _seq(name: str) -> int:
    tail = name[-10:]
    return int(tail) if tail.isdigit() else -1


def discard_node(session: Session, node: str | None, parent: str, prefix: str) -> None:
    """Delete a contender node in the background (or find it by ``prefix`` when its
    name is unknown); never blocks; retried after the next reconnect if it fails."""
    from kazoo.exceptions import ConnectionLoss

    def again() -> None:
        discard_node(session, node, parent, prefix)

    if session.state != CONNECTED:
        session.defer(again)
        return
    kz = session.kz

    def deleted(result: Any) -> None:
        try:
            result.get(block=False)
        except ConnectionLoss:  # the session may live on: try after the reconnect
            session.defer(again)
        except Exception:
            pass

    if node is not None:
        kz.delete_async(node).rawlink(deleted)
        return

    def listed(result: Any) -> None:
        try:
            children = result.get(block=False)
        except ConnectionLoss:
            session.defer(again)
            return
        except Exception:
            return
        for child in children:
            if child.startswith(f"_c_{prefix}-"):
                kz.delete_async(f"{parent.rstrip('/')}/{child}").rawlink(deleted)

    kz.get_children_async(parent).rawlink(listed)


def _children_watch(path: str, gone: threading.Event) -> Callable[[Any], Any]:
    def request(kz: Any) -> Any:
        return kz.get_children_async(path, lambda _event: gone.set())
    return request


def _exists_watch(path: str, gone: threading.Event) -> Callable[[Any], Any]:
    # kazoo's own watch (its thread), not the dispatching one: it only sets an Event.
    def request(kz: Any) -> Any:
        return kz.exists_async(path, lambda _event: gone.set())
    return request


class Lease:
    """A held lock (or leadership); see the module docstring for what it guarantees."""

    def __init__(self, zk: ZooKeeper, session: Session, epoch: int, node: str) -> None:
        self._zk, self._session, self._epoch = zk, session, epoch
        self.node = node
        """The contender node that holds the lock."""
        self.zxid = _seq(node)
        """The node's sequence number: grows with every new holder of this lock."""
        self._released = False

    @property
    def valid(self) -> bool:
        """True while the session that took the lease is CONNECTED and was never
        disconnected since; False once SUSPENDED, LOST or released (for good)."""
        session = self._session
        return (not self._released and session.state == CONNECTED
                and session.epoch == self._epoch)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless :attr:`valid` (a few hundred ns)."""
        if not self.valid:
            raise LeaseLostError(
                "lease lost: the session was disconnected, another client may hold it",
                service="zookeeper", operation="lease", endpoint=self._zk.endpoints[0])

    def release(self, *, timeout: float | None = None) -> None:
        """Delete the node, within ``timeout``; if that fails the node is deleted in the
        background (and goes with the session anyway). Never raises for that."""
        if self._released:
            return
        self._released = True
        parent = self.node.rsplit("/", 1)[0] or "/"
        try:
            self._zk.delete(self.node, timeout=timeout)
        except ResilienceError:
            discard_node(self._session, self.node, parent, "")

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.node} valid={self.valid}>"


class Lock:
    """A distributed lock on ``path``: ``with zk.lock(path, timeout=1.0) as lease:``.

    Args:
        zk: the client.
        path: the lock's node (its children are the contenders).
        timeout: the hard bound of one :meth:`acquire` (seconds), waits included.
        identifier: stored in the contender node (who holds it, for humans).
    """

    kind = "lock"

    def __init__(self, zk: ZooKeeper, path: str, *, timeout: float,
                 identifier: str = "") -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self._zk, self.path, self.timeout = zk, path.rstrip("/") or "/", timeout
        self.identifier = identifier
        self._lease: Lease | None = None

    def acquire(self, *, timeout: float | None = None) -> Lease:
        """Take the lock within ``timeout`` (default: the lock's); a :class:`Lease`.

        Raises:
            LockTimeout: others held it for the whole timeout.
            ResilienceError: a call failed or was rejected (not CONNECTED).

        On any failure this contender's node is removed in the background.
        """
        zk = self._zk
        budget = self.timeout if timeout is None else timeout
        end = _monotonic() + budget
        session = zk.session
        prefix = f"{zk.client_prefix}{uuid.uuid4().hex[:8]}"
        node: str | None = None
        try:
            with deadline_scope(budget):
                if self.path not in zk.ready_paths:  # once per client and path
                    zk.ensure_path(self.path)
                    zk.ready_paths.add(self.path)
                epoch = session.epoch  # connected now: a later change is a disconnect
                node = zk._call("create_protected", 0, zk._protected_create(
                    f"{self.path}/{self.kind}-", self.identifier.encode(), True, True, False,
                    prefix=prefix))
                lease = self._wait_turn(session, epoch, node, end)
        except BaseException as exc:
            discard_node(session, node, self.path, prefix)
            if isinstance(exc, TimeoutError) and not isinstance(exc, LockTimeout) \
                    and _monotonic() >= end - 0.002:
                # The lock's own budget ran out inside a request: the timeout is ours.
                raise LockTimeout(f"{self.kind} {self.path}: not acquired in {budget} s",
                                  service="zookeeper", operation=self.kind,
                                  endpoint=zk.endpoints[0]) from exc
            raise
        self._lease = lease
        return lease

    def _wait_turn(self, session: Session, epoch: int, node: str, end: float) -> Lease:
        zk = self._zk
        mine = node.rsplit("/", 1)[1]
        while True:
            if session.epoch != epoch:
                raise LeaseLostError("disconnected while acquiring", service="zookeeper",
                                     operation=self.kind, endpoint=zk.endpoints[0])
            gone = threading.Event()
            if self.watch_children:  # list and watch in one request: no change missed
                children = zk.run("get_children", _children_watch(self.path, gone)) or []
            else:
                children = zk.get_children(self.path) or []
            ordered = sorted((c for c in children if _seq(c) >= 0), key=_seq)
            if mine not in ordered:
                raise LeaseLostError("the contender node is gone (session lost)",
                                     service="zookeeper", operation=self.kind,
                                     endpoint=zk.endpoints[0])
            blocker = self._blocker(ordered, ordered.index(mine))
            if blocker is None:
                return Lease(zk, session, epoch, node)
            if blocker and zk.run("exists", _exists_watch(f"{self.path}/{blocker}",
                                                          gone)) is None:
                continue
            while not gone.is_set():
                left = end - _monotonic()
                if left <= 0:
                    raise LockTimeout(f"{self.kind} {self.path} held by others",
                                      service="zookeeper", operation=self.kind,
                                      endpoint=zk.endpoints[0])
                if session.epoch != epoch:
                    break
                gone.wait(min(left, _SLICE))

    watch_children = False
    """Wait for any change of the children (a semaphore) instead of one node's deletion."""

    def _blocker(self, ordered: list[str], index: int) -> str | None:
        """The contender whose deletion to wait for; None: ours is the turn ("": wait
        for any change of the children)."""
        return None if index == 0 else ordered[index - 1]

    def release(self, *, timeout: float | None = None) -> None:
        """Release the lease this object acquired (no-op when none)."""
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release(timeout=timeout)

    def contenders(self, *, timeout: float | None = None) -> list[str]:
        """The identifiers of the contenders, holder first."""
        children = self._zk.get_children(self.path, timeout=timeout) or []
        out = []
        for child in sorted((c for c in children if _seq(c) >= 0), key=_seq):
            got = self._zk.get(f"{self.path}/{child}", timeout=timeout)
            if got is not None:
                out.append(got[0].decode("utf-8", "replace"))
        return out

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Election(Lock):
    """Leader election on ``path``: the contender holding the lock leads.

    ``with election.lead(timeout=30.0) as lease:`` waits at most ``timeout`` to become
    leader and returns the lease of the leadership (same guarantees as a lock's);
    ``contenders()`` lists the identifiers, leader first.
    """

    kind = "leader"

    def __init__(self, zk: ZooKeeper, path: str, *, identifier: str = "") -> None:
        super().__init__(zk, path, timeout=1.0, identifier=identifier)

    def lead(self, *, timeout: float) -> Lease:
        """Become leader within ``timeout`` (LockTimeout otherwise)."""
        return self.acquire(timeout=timeout)


class ReadLock(Lock):
    """The shared side of a read/write lock: held alongside other readers, never with a
    writer that queued earlier (so writers are not starved)."""

    kind = "read"

    def _blocker(self, ordered: list[str], index: int) -> str | None:
        writers = [c for c in ordered[:index] if "-write-" in c]
        return writers[-1] if writers else None


class WriteLock(Lock):
    """The exclusive side of a read/write lock: waits for every earlier contender."""

    kind = "write"


class ReadWriteLock:
    """``rw = zk.rw_lock(path)``; ``with rw.read(timeout=1.0) as lease:`` (shared) or
    ``with rw.write(timeout=1.0) as lease:`` (exclusive). Same bounds and leases as
    :class:`Lock`."""

    def __init__(self, zk: ZooKeeper, path: str, identifier: str = "") -> None:
        self._zk, self.path, self.identifier = zk, path, identifier

    def read(self, *, timeout: float) -> ReadLock:
        return ReadLock(self._zk, self.path, timeout=timeout, identifier=self.identifier)

    def write(self, *, timeout: float) -> WriteLock:
        return WriteLock(self._zk, self.path, timeout=timeout, identifier=self.identifier)


class Semaphore(Lock):
    """At most ``max_leases`` holders at once: ``with zk.semaphore(path, 3, timeout=1.0)
    as lease:``. Same bounds and leases as :class:`Lock`; every holder shares the
    ``max_leases`` it was given (keep it the same for one path)."""

    kind = "slot"
    watch_children = True

    def __init__(self, zk: ZooKeeper, path: str, max_leases: int, *, timeout: float,
                 identifier: str = "") -> None:
        if max_leases < 1:
            raise ValueError(f"max_leases must be >= 1, got {max_leases!r}")
        super().__init__(zk, path, timeout=timeout, identifier=identifier)
        self.max_leases = max_leases

    def _blocker(self, ordered: list[str], index: int) -> str | None:
        return None if index < self.max_leases else ""
