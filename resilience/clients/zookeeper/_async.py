"""The asyncio ZooKeeper wrapper: the same session, breaker and pipeline, never blocking.

::

    zk = AsyncZooKeeper("10.0.0.1:2181,10.0.0.2:2181", timeout=0.2)
    await zk.create("/app/config", b"v1", makepath=True)
    data, stat = await zk.get("/app/config")
    await zk.aclose()

kazoo has no asyncio handler: each request goes through kazoo's async API (which only
queues it for kazoo's connection thread) and its ``AsyncResult`` is bridged to a future
of the running loop, awaited within the remaining deadline. The first-connect wait is
a future too. Nothing blocks the loop. Everything else (options, session state,
breaker, protected creates, errors) is shared with
:class:`~resilience.clients.zookeeper.ZooKeeper`. The recipes (lock, election, IDs,
watches) are those of the sync client: use ``ZooKeeper`` for them (a lock's holder
works in threads anyway).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience.clients.zookeeper._common import ZooKeeperBase
from resilience.clients.zookeeper._session import Session
from resilience.clients.zookeeper._sync import (
    Transaction,
    Watch,
    _dispatching,
    find_protected,
    protected_name,
    split_path,
)

__all__ = ["AsyncZooKeeper"]

T = TypeVar("T")
_monotonic = time.monotonic


class ACall:
    """One async attempt: the kazoo client and the attempt's deadline."""

    __slots__ = ("deadline", "kz", "session")

    def __init__(self, session: Session, kz: Any, deadline: float) -> None:
        self.session, self.kz, self.deadline = session, kz, deadline

    def wait(self, result: Any) -> Awaitable[Any]:
        return self.session.await_(result, self.deadline)


class AsyncZooKeeper(ZooKeeperBase):
    """An asyncio ZooKeeper client that never hangs; arguments as for ``ZooKeeper``.
    Construction opens nothing; use ``await aclose()`` or ``async with``."""

    async def _aattempt(self, session: Session, index: int,
                        fn: Callable[[Any], Awaitable[T]], remaining: float, op: str) -> T:
        deadline = _monotonic() + remaining
        kz = await session.aready(remaining)
        return await fn(ACall(session, kz, deadline))

    async def _ahealth_probe(self, index: int, timeout: float) -> None:
        # See ZooKeeperBase._probe_session: the session's state and one round trip.
        session = self._probe_session()
        await session.await_(session.kz.exists_async("/"), _monotonic() + timeout)

    async def get(self, path: str, *, watch: Watch | None = None,
                  timeout: float | None = None) -> tuple[bytes, Any] | None:
        """``(data, stat)`` of the node, or None if there is none."""
        async def fn(c: ACall) -> tuple[bytes, Any] | None:
            from kazoo.exceptions import NoNodeError
            try:
                return await c.wait(c.kz.get_async(path, _dispatching(c.session, watch)))  # type: ignore[no-any-return]
            except NoNodeError:
                return None
        return await self._acall("get", 0, fn, timeout)

    async def exists(self, path: str, *, watch: Watch | None = None,
                     timeout: float | None = None) -> Any:
        """The node's ``ZnodeStat``, or None if there is none."""
        return await self._acall("exists", 0, lambda c: c.wait(
            c.kz.exists_async(path, _dispatching(c.session, watch))), timeout)

    async def get_children(self, path: str, *, watch: Watch | None = None,
                           timeout: float | None = None) -> list[str] | None:
        """The names of the node's children, or None if there is no node."""
        async def fn(c: ACall) -> list[str] | None:
            from kazoo.exceptions import NoNodeError
            try:
                return await c.wait(c.kz.get_children_async(  # type: ignore[no-any-return]
                    path, _dispatching(c.session, watch)))
            except NoNodeError:
                return None
        return await self._acall("get_children", 0, fn, timeout)

    async def create(self, path: str, value: bytes = b"", *, ephemeral: bool = False,
                     sequence: bool = False, makepath: bool = False,
                     protected: bool | None = None, timeout: float | None = None) -> str:
        """As :meth:`ZooKeeper.create`."""
        if protected is None:
            protected = sequence
        if not protected:
            return await self._acall("create", 0, lambda c: c.wait(c.kz.create_async(
                path, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath)),
                timeout)
        prefix = f"{self.client_prefix}{uuid.uuid4().hex[:8]}"
        name = protected_name(path, prefix)
        parent, _ = split_path(name)
        sent = [False]

        async def fn(c: ACall) -> str:
            from kazoo.exceptions import NodeExistsError, NoNodeError
            if sent[0]:
                try:
                    found = find_protected(await c.wait(c.kz.get_children_async(parent)),
                                           prefix)
                except NoNodeError:
                    found = None
                if found is not None:
                    return f"{parent.rstrip('/')}/{found}"
            sent[0] = True
            try:
                return await c.wait(c.kz.create_async(  # type: ignore[no-any-return]
                    name, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath))
            except NodeExistsError:
                if sequence:
                    raise
                return name
        return await self._acall("create_protected", 0, fn, timeout)

    async def set(self, path: str, value: bytes, version: int = -1, *,
                  timeout: float | None = None) -> Any:
        """As :meth:`ZooKeeper.set`."""
        op = "set" if version == -1 else "set_versioned"
        return await self._acall(op, 0, lambda c: c.wait(c.kz.set_async(path, value, version)),
                                 timeout)

    async def delete(self, path: str, version: int = -1, *,
                     timeout: float | None = None) -> bool:
        """As :meth:`ZooKeeper.delete`: False when there was no node."""
        async def fn(c: ACall) -> bool:
            from kazoo.exceptions import NoNodeError
            try:
                await c.wait(c.kz.delete_async(path, version))
            except NoNodeError:
                return False
            return True
        return await self._acall("delete" if version == -1 else "delete_versioned", 0, fn,
                                 timeout)

    async def ensure_path(self, path: str, *, timeout: float | None = None) -> bool:
        """Create the node and its parents where missing (True)."""
        async def fn(c: ACall) -> bool:
            return bool(await c.wait(c.kz.ensure_path_async(path)))
        return await self._acall("ensure_path", 0, fn, timeout)

    def transaction(self) -> AsyncTransaction:
        """A transaction to fill and ``await commit(timeout=...)``."""
        return AsyncTransaction(self)

    async def run(self, op: str, fn: Callable[[Any], Any], *,
                  timeout: float | None = None) -> Any:
        """As :meth:`ZooKeeper.run`: ``fn(kazoo_client)`` returns an ``IAsyncResult``."""
        return await self._acall(op, 0, lambda c: c.wait(fn(c.kz)), timeout)


class AsyncTransaction(Transaction):
    """:class:`Transaction` with ``await commit()``."""

    def __init__(self, zk: AsyncZooKeeper) -> None:
        self._azk = zk
        self._ops = []

    async def commit(self, *, timeout: float | None = None) -> list[Any]:  # type: ignore[override]
        """The result of each operation; never retried."""
        return await self._azk._acall(
            "transaction", 0, lambda c: c.wait(self.build(c.kz).commit_async()), timeout)
