"""Watches on a node's data or children that last: re-armed after every event,
reconnect and session loss; callbacks on the client's thread, never kazoo's.

kazoo's ``DataWatch`` blocks its caller while ZooKeeper is down; these never block:
each (re-)arm is one async request whose completion only queues work. A watch reads the
node and sets a ZooKeeper watch in the same request; when it fires, or when the session
is CONNECTED again (a new session has no watches; after a reconnect an event may have
been missed), it reads again. The callback runs on the client's callback thread, in
order, only when what it would see changed (data version or child list), so a re-arm
after a reconnect does not repeat a call. A callback may block that thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilience.clients.zookeeper._session import CONNECTED

if TYPE_CHECKING:
    from resilience.clients.zookeeper._sync import ZooKeeper

__all__ = ["ChildrenWatch", "DataWatch"]


class _Watch:
    def __init__(self, zk: ZooKeeper, path: str) -> None:
        self._zk, self.path = zk, path
        self._session = zk.session
        self._stopped = False
        self._last: Any = object()
        self._unsubscribe = zk.add_session_listener(self._on_state)
        if self._session.state != CONNECTED:
            try:  # start the session; if it is not up in time the next CONNECTED arms
                self._session.ready(zk.options.connect_timeout)
            except Exception:
                return
        self._arm()

    def _on_state(self, old: str, new: str) -> None:
        if new == "CONNECTED" and not self._stopped:
            self._arm()

    def _fired(self, _event: Any) -> None:
        # kazoo's thread: only queue the re-arm.
        if not self._stopped:
            self._session.dispatcher.submit(self._arm)

    def _arm(self) -> None:
        session = self._session
        if self._stopped or session.state != CONNECTED:
            return  # the next CONNECTED re-arms
        self._request(session.kz).rawlink(
            lambda r: session.dispatcher.submit(lambda: self._done(r)))

    def _request(self, kz: Any) -> Any:
        raise NotImplementedError

    def _done(self, result: Any) -> None:
        raise NotImplementedError

    def _deliver(self, key: Any, fn: Callable[[], object]) -> None:
        if self._stopped or key == self._last:
            return
        self._last = key
        fn()

    def stop(self) -> None:
        """No more callbacks (the ZooKeeper watch set last fires into nothing)."""
        self._stopped = True
        self._unsubscribe()


class DataWatch(_Watch):
    """``fn(data, stat)`` now and after every change of ``path``; ``(None, None)`` while
    there is no node. Stop with :meth:`stop`."""

    def __init__(self, zk: ZooKeeper, path: str, fn: Callable[[bytes | None, Any], object]) -> None:
        self._fn = fn
        super().__init__(zk, path)

    def _request(self, kz: Any) -> Any:
        return kz.get_async(self.path, self._fired)

    def _done(self, result: Any) -> None:
        from kazoo.exceptions import NoNodeError

        try:
            data, stat = result.get(block=False)
        except NoNodeError:
            # Watch for the node's creation, then report it missing.
            self._session.kz.exists_async(self.path, self._fired)
            self._deliver(None, lambda: self._fn(None, None))
            return
        except Exception:
            return
        self._deliver((stat.mzxid, stat.version), lambda: self._fn(data, stat))


class ChildrenWatch(_Watch):
    """``fn(children)`` now and after every change of ``path``'s children; None while
    there is no node. Stop with :meth:`stop`."""

    def __init__(self, zk: ZooKeeper, path: str, fn: Callable[[list[str] | None], object]) -> None:
        self._fn = fn
        super().__init__(zk, path)

    def _request(self, kz: Any) -> Any:
        return kz.get_children_async(self.path, self._fired)

    def _done(self, result: Any) -> None:
        from kazoo.exceptions import NoNodeError

        try:
            children = sorted(result.get(block=False))
        except NoNodeError:
            self._session.kz.exists_async(self.path, self._fired)
            self._deliver(None, lambda: self._fn(None))
            return
        except Exception:
            return
        self._deliver(tuple(children), lambda: self._fn(children))
