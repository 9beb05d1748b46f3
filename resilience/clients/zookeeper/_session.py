"""The lazily built driver of the ZooKeeper clients: one kazoo session and its state.

Theory of operation
-------------------
A :class:`Session` owns one ``KazooClient``, built with no I/O (the lazy driver's
factory) and started by the first call with ``start_async()``: never ``start(timeout)``,
whose failure path calls ``stop()`` and blocks 10 s or more. Calls in the first
``connect_timeout`` after the start wait for the connection (each within its own
budget); after that, and whenever the session is not CONNECTED, a call is refused at
once with :class:`NotConnectedError`, before anything is queued: kazoo would queue a
request made while SUSPENDED and send it after the reconnect, possibly long after the
caller gave up.

The state is followed through kazoo's listener, which runs on kazoo's connection thread
and so only flips attributes here (``state``, ``epoch``); everything that may take time
(forcing the breaker open or closed, events, user listeners, contender clean-up) runs on
the :class:`Dispatcher` thread. ``epoch`` grows every time the session leaves
CONNECTED: a lease or a claimed worker number taken in one epoch is invalid in any other.

kazoo never declares a session LOST while it cannot reach the ensemble (it learns of
the expiry only on reconnecting). As Curator does, a client-side timer declares it lost
``session_timeout`` after SUSPENDED began, when the server has expired it for sure.

Every wait on a kazoo ``AsyncResult`` is bounded (:meth:`Session.wait`); ``close()``
fails every pending one at once and stops kazoo in a background thread (its ``stop()``
can wait 10 s for the connection thread).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CONNECTED", "LOST", "SUSPENDED", "Dispatcher", "NotConnectedError", "Session"]

_log = logging.getLogger(__name__)
_monotonic = time.monotonic

CONNECTED = "CONNECTED"
SUSPENDED = "SUSPENDED"
LOST = "LOST"
NEW = "NEW"  # built, never connected


class NotConnectedError(Exception):
    """The session is not CONNECTED: the call was refused before any I/O."""


class Dispatcher:
    """One daemon thread running callbacks in order, so none runs on kazoo's threads.

    Started on first use; ``close()`` stops it after the queued callbacks.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[], object]) -> None:
        if self._closed:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(target=self._run, name=self._name,
                                                    daemon=True)
                    self._thread.start()
        self._queue.put(fn)

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a user callback's bug must not stop the others
                _log.exception("zookeeper: a callback raised")

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)


class Session:
    """One kazoo session: lazy start, state, bounded waits, listeners (see module doc).

    Args:
        hosts: the kazoo connection string (with the chroot appended).
        options: the resolved :class:`ZooKeeperOptions`.
        on_state: called on the dispatcher thread with (old, new) state names.
    """

    def __init__(self, hosts: str, options: Any, on_state: Callable[[str, str], None], *,
                 randomize_hosts: bool = True) -> None:
        from kazoo.client import KazooClient
        from kazoo.handlers.threading import KazooTimeoutError

        auth = [tuple(options.auth.split(":", 1))] if options.auth else None
        self.timeout_error = KazooTimeoutError
        self._members = len(hosts.split("/", 1)[0].split(","))
        self.connect_failures = 0  # failed TCP connects since the last CONNECTED
        self.kz = KazooClient(
            hosts=hosts,
            randomize_hosts=randomize_hosts,
            handler=_handler(options.connect_timeout, self._connect_failed),
            timeout=options.session_timeout,
            auth_data=auth,
            # Keep reconnecting for good, but never pause long (default max_delay: 1 h).
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 2,
                              "max_delay": options.reconnect_max_delay},
            # One try: the wrapper's retry decides (default: retry forever).
            command_retry={"max_tries": 1},
        )
        self.kz.add_listener(self._on_kazoo_state)
        self.connect_timeout: float = options.connect_timeout
        self.session_timeout: float = options.session_timeout
        self.state = NEW
        self.epoch = 0
        self.session_id: int | None = None
        self.last_reply = 0.0  # monotonic time of the last reply to one of our requests
        self.dispatcher = Dispatcher("zookeeper-callbacks")
        self._on_state = on_state
        self._started_at: float | None = None
        self._start_lock = threading.Lock()
        self._up = threading.Event()
        self._pending: set[Any] = set()
        self._closed = False
        self._lost_timer: threading.Timer | None = None
        self._async_waiters: list[tuple[Any, Any]] = []
        self.cleanups: list[Callable[[], object]] = []  # run on the next CONNECTED

    # ---- state ---------------------------------------------------------------------

    def _on_kazoo_state(self, state: str) -> None:
        # kazoo's connection thread: flip attributes, hand everything else off.
        old = self.state
        if state == CONNECTED:
            self.connect_failures = 0
            self.last_reply = _monotonic()
            self.session_id = self.kz.client_id[0] if self.kz.client_id else None
            self.state = CONNECTED
            self._up.set()
            waiters, self._async_waiters = self._async_waiters, []
            for loop, fut in waiters:
                _wake(loop, fut)
        else:
            self.epoch += 1  # before the state: a lease reads state then epoch
            self.state = SUSPENDED if state == "SUSPENDED" else LOST
            self._up.clear()
        self.dispatcher.submit(lambda: self._changed(old, self.state))

    def _connect_failed(self) -> None:
        # kazoo's connection thread: a TCP connect failed (refused, unreachable, timed
        # out). Once every member failed, a first-connect wait has nothing to wait for.
        self.connect_failures += 1
        if self.state == NEW and self.connect_failures >= self._members:
            self._up.set()
            waiters, self._async_waiters = self._async_waiters, []
            for loop, fut in waiters:
                _wake(loop, fut)

    def _changed(self, old: str, new: str) -> None:
        # Dispatcher thread.
        timer, self._lost_timer = self._lost_timer, None
        if timer is not None:
            timer.cancel()
        if new == SUSPENDED and not self._closed:
            # kazoo learns of an expiry only when it reconnects: declare the loss
            # ourselves once the server has expired the session for sure.
            timer = threading.Timer(self.session_timeout, self._expired, (self.epoch,))
            timer.daemon = True
            timer.start()
            self._lost_timer = timer
        if new == CONNECTED:
            self._run_cleanups()
        elif new == LOST:
            self._revive()
        self._on_state(old, new)

    def _revive(self) -> None:
        """Start kazoo again if its connection thread died (dispatcher thread).

        kazoo's loop ends on an exception it does not expect (measured: a garbled reply
        header raises struct.error in the connection thread) and the client then stays
        CLOSED for good. A session the wrapper did not close must come back.
        """
        kz = self.kz
        if self._closed or kz._stopped.is_set():
            return
        if not kz._connection.connection_stopped.is_set():
            return  # the loop is alive (an expired session): kazoo reconnects itself
        _log.warning("zookeeper: kazoo's connection thread ended; starting it again")
        try:
            kz.start_async()
        except Exception:
            _log.exception("zookeeper: could not restart kazoo")

    def defer(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the dispatcher thread once CONNECTED (now, if it is)."""
        self.cleanups.append(fn)
        if self.state == CONNECTED and not self._closed:
            self.dispatcher.submit(self._run_cleanups)

    def _run_cleanups(self) -> None:
        cleanups, self.cleanups = self.cleanups, []
        for fn in cleanups:
            fn()

    def _expired(self, epoch: int) -> None:
        if self.epoch == epoch and self.state == SUSPENDED and not self._closed:
            self.dispatcher.submit(lambda: self._on_state(SUSPENDED, LOST))

    # ---- the call path -------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._started_at is None and not self._closed:
                self._started_at = _monotonic()
                self.kz.start_async()

    def ready(self, budget: float) -> Any:
        """The kazoo client if CONNECTED, after waiting (within ``budget``) only while the
        first connect is under way; else NotConnectedError at once."""
        if self.state == CONNECTED:
            return self.kz
        if self._closed:
            raise NotConnectedError("client is closed")
        if self._started_at is None:
            self._start()
        if self.state == NEW and self._started_at is not None and not self._refused():
            wait = min(budget, self._started_at + self.connect_timeout - _monotonic())
            if wait > 0 and self._up.wait(wait) and self.state == CONNECTED:
                return self.kz
            if wait >= budget and not self._refused():  # the call's budget ran out
                raise self.timeout_error("no connection within the call's budget")
        raise NotConnectedError(self._why())

    def _refused(self) -> bool:
        return self.connect_failures >= self._members

    def _why(self) -> str:
        if self.state == NEW and self._refused():
            return f"session new: connecting failed on every member ({self._members})"
        return f"session {self.state.lower()}: not connected"

    async def aready(self, budget: float) -> Any:
        """:meth:`ready` for asyncio: the first-connect wait does not block the loop."""
        if self.state == CONNECTED:
            return self.kz
        if self._closed:
            raise NotConnectedError("client is closed")
        if self._started_at is None:
            self._start()
        if self.state == NEW and self._started_at is not None and not self._refused():
            import asyncio

            wait = min(budget, self._started_at + self.connect_timeout - _monotonic())
            if wait > 0:
                loop = asyncio.get_running_loop()
                fut = loop.create_future()
                self._async_waiters.append((loop, fut))
                if self.state == CONNECTED:  # connected meanwhile: no wake-up will come
                    return self.kz
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, wait)
                if self.state == CONNECTED:
                    return self.kz
            if wait >= budget and not self._refused():
                raise self.timeout_error("no connection within the call's budget")
        raise NotConnectedError(self._why())

    def wait(self, result: Any, deadline: float) -> Any:
        """``result.get()`` bounded by ``deadline`` (monotonic); KazooTimeoutError past it.

        A request that timed out is not cancelled: kazoo may still send it.
        """
        left = deadline - _monotonic()
        if left <= 0:
            raise self.timeout_error("deadline passed before the request was sent")
        pending = self._pending
        pending.add(result)
        try:
            value = result.get(True, left)
        except self.timeout_error:
            self.stalled()
            raise
        except Exception:
            self.last_reply = _monotonic()  # the server answered (NoNode...) or kazoo did
            raise
        finally:
            pending.discard(result)
        self.last_reply = _monotonic()
        return value

    def stalled(self) -> None:
        """A request timed out: drop the connection if nothing came back for 2/3 of the
        session timeout, so kazoo moves to another member and reports SUSPENDED.

        kazoo pings only when it has sent nothing for 1/3 of the session timeout, so
        steady requests to a frozen member keep it from ever noticing (measured: a
        session stuck on a frozen member for 20 s while requests timed out).
        """
        if _monotonic() - self.last_reply < self.session_timeout * 2 / 3:
            return
        sock = getattr(self.kz._connection, "_socket", None)
        if sock is not None and self.state == CONNECTED:
            self.last_reply = _monotonic()  # once per stall, not per call
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def await_(self, result: Any, deadline: float) -> Any:
        """:meth:`wait` for asyncio: the result is bridged to a future of this loop."""
        import asyncio

        left = deadline - _monotonic()
        if left <= 0:
            raise self.timeout_error("deadline passed before the request was sent")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def link(r: Any) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                loop.call_soon_threadsafe(_settle, fut, r)

        result.rawlink(link)
        try:
            value = await asyncio.wait_for(fut, left)
        except TimeoutError:
            self.stalled()
            raise self.timeout_error("no reply within the deadline") from None
        except Exception:
            self.last_reply = _monotonic()
            raise
        finally:
            result.unlink(link)
        self.last_reply = _monotonic()
        return value

    # ---- release -------------------------------------------------------------------

    def close(self) -> None:
        """Fail every pending wait at once, stop kazoo in the background."""
        from kazoo.exceptions import ConnectionClosedError

        self._closed = True
        self.epoch += 1
        self.state = LOST
        self._up.set()  # wake a first-connect wait: it then sees the closed state
        for result in list(self._pending):
            result.set_exception(ConnectionClosedError("client is closed"))
        for loop, fut in self._async_waiters:
            _wake(loop, fut)
        timer = self._lost_timer
        if timer is not None:
            timer.cancel()
        self.dispatcher.close()
        if self._started_at is not None:
            kz = self.kz
            threading.Thread(target=_stop, args=(kz,), name="zookeeper-stop",
                             daemon=True).start()


def _handler(connect_timeout: float, on_failure: Callable[[], None]) -> Any:
    """kazoo's threading handler whose TCP connects are capped at ``connect_timeout``
    (kazoo uses the whole session timeout) and report their failures."""
    from kazoo.handlers.threading import SequentialThreadingHandler

    class Handler(SequentialThreadingHandler):  # type: ignore[misc]
        def create_connection(self, *args: Any, **kwargs: Any) -> Any:
            timeout = kwargs.get("timeout")
            kwargs["timeout"] = connect_timeout if timeout is None else min(
                timeout, connect_timeout)
            try:
                return super().create_connection(*args, **kwargs)
            except Exception:
                on_failure()
                raise

    return Handler()


def _stop(kz: Any) -> None:
    try:
        kz.stop()
        kz.close()
    except Exception:
        _log.debug("zookeeper: stop failed", exc_info=True)


def _wake(loop: Any, fut: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: Any) -> None:
    if not fut.done():
        fut.set_result(None)


def _settle(fut: Any, result: Any) -> None:
    if fut.done():
        return
    try:
        fut.set_result(result.get(block=False))
    except BaseException as exc:
        fut.set_exception(exc)
