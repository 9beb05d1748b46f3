"""The asyncio Cassandra wrapper: the driver's ResponseFuture bridged to the running loop.

::

    async with AsyncCassandra(["10.0.0.1"], keyspace="shop", timeout=0.1) as db:
        row = (await db.execute("SELECT * FROM users WHERE id = %s", (7,))).one()
        async for row in await db.execute("SELECT * FROM events", fetch_size=100): ...

No thread is parked per call: a request is sent with ``execute_async`` (which only
writes to the driver's connection) and its ResponseFuture's callback wakes an asyncio
future through ``loop.call_soon_threadsafe``; the call awaits it under
``asyncio.timeout(remaining)``. The first call's connect runs in the driver's
background thread as for the sync client; the loop awaits it the same way. Everything
else (host choice, breakers, errors, paging) is the sync client's: :mod:`._sync`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

from resilience.clients._base import _CallerError
from resilience.clients.cassandra._common import CassandraBase, Request
from resilience.clients.cassandra._hedged import AsyncHedging
from resilience.clients.cassandra._probe import outcome, send_probe
from resilience.clients.cassandra._result import AsyncResult
from resilience.clients.cassandra._send import Flight
from resilience.core.deadline import deadline as _ambient
from resilience.errors import ResilienceError

__all__ = ["AsyncCassandra"]

_monotonic = time.monotonic


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class AsyncCassandra(AsyncHedging, CassandraBase[Any]):
    """Cassandra for asyncio; the arguments and methods are those of
    :class:`~resilience.clients.cassandra.Cassandra`, awaited."""

    async def aclose(self) -> None:
        """Close the client; ``Cluster.shutdown()`` joins the driver's threads, so it runs
        in a worker thread and the loop goes on meanwhile. Calls in flight end at once."""
        await asyncio.to_thread(self._driver.close)

    async def _aattempt(self, connector: Any, index: int, fn: Any, remaining: float,
                        op: str) -> Any:
        began = _monotonic()
        deadline = began + remaining
        permit = self._cluster_permit(op, began)
        try:
            session = await connector.aget(remaining)
            if isinstance(fn, list):
                result: Any = await self._send_many(connector, session, fn, deadline)
            else:
                flight = self._start(connector, session, fn, deadline)
                result = flight, await self._wait(flight, deadline)
        except BaseException as exc:
            self._cluster_outcome(permit, began, exc)
            raise
        self._cluster_outcome(permit, began, None)
        return result

    async def _ahealth_probe(self, index: int, timeout: float) -> None:
        # system.local on that host only, through the driver (why: _probe's docstring);
        # its callback wakes the loop, as a call's does. The prober cancels at timeout.
        future = send_probe(self, index, timeout)
        if not future._event.is_set():
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()

            def done(*_: Any) -> None:  # on the driver's reactor thread (or inline)
                loop.call_soon_threadsafe(_wake, waiter)

            future.add_callbacks(done, done)
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            finally:
                future.clear_callbacks()
        outcome(future)

    async def _wait(self, flight: Flight, deadline: float) -> Any:
        """The flight's ResultSet, awaited at most until ``deadline``."""
        future, _, index, permit, _, _ = flight
        if not future._event.is_set():
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()

            def done(*_: Any) -> None:  # on the driver's reactor thread (or inline)
                loop.call_soon_threadsafe(_wake, waiter)

            future.add_callbacks(done, done)
            try:
                async with asyncio.timeout(max(0.0, deadline - _monotonic())):
                    await waiter
            except TimeoutError:
                return self._finish(flight, self._late(flight))
            except BaseException:  # cancelled: no outcome for the host
                future.clear_callbacks()
                self._breakers[index].release(permit)
                raise
        return self._finish(flight)

    async def _send_many(self, connector: Any, session: Any, requests: list[Request],
                         deadline: float) -> list[Any]:
        limit = asyncio.Semaphore(max(1, getattr(requests, "concurrency", 32)))

        async def one(request: Request) -> Any:
            async with limit:
                try:
                    flight = self._start(connector, session, request, deadline)
                    return flight, await self._wait(flight, deadline)
                except _CallerError as err:
                    return err.exc
                except Exception as exc:
                    return exc

        out = list(await asyncio.gather(*(one(r) for r in requests)))
        if out and all(isinstance(r, BaseException) for r in out):
            raise out[0]
        return out

    def _result(self, answer: tuple[Flight, Any], timeout: float | None) -> AsyncResult:
        return AsyncResult.of(self, answer, timeout)  # type: ignore[no-any-return]

    async def execute(self, query: Any, params: Any = None, *, timeout: float | None = None,
                      idempotent: bool | None = None, consistency: str | None = None,
                      paging_state: bytes | None = None,
                      fetch_size: int | None = None) -> AsyncResult:
        """Run one statement (see :meth:`Cassandra.execute`)."""
        request = self._request(query, params, idempotent, consistency, paging_state,
                                fetch_size)
        return self._result(await self._acall(request.op, 0, _fn(request), timeout), timeout)

    async def prepare(self, query: str, *, timeout: float | None = None) -> Any:
        """A prepared statement for ``query``, cached per text (see
        :meth:`Cassandra.prepare`)."""
        connector = self._driver.peek()
        if connector is not None and query in connector.prepared:
            return connector.prepared[query]
        _, rs = await self._acall("prepare", 0, _fn(Request(query, None, "prepare", True)),
                                  timeout)
        return self._driver.get().adopt_prepared(query, rs)

    async def batch(self, statements: Iterable[Any], *, kind: str = "logged",
                    timeout: float | None = None, idempotent: bool | None = None,
                    consistency: str | None = None) -> AsyncResult:
        """Run ``(query, params)`` pairs as one batch (see :meth:`Cassandra.batch`)."""
        request = self._batch(statements, kind, consistency, idempotent)
        return self._result(await self._acall("batch", 0, _fn(request), timeout), timeout)

    async def execute_concurrent(
        self, query: Any, params_seq: Sequence[Any], *, timeout: float | None = None,
        concurrency: int = 32, idempotent: bool | None = None, consistency: str | None = None,
    ) -> list[AsyncResult | ResilienceError]:
        """Run ``query`` once per parameter set, concurrently, within one budget (see
        :meth:`Cassandra.execute_concurrent`)."""
        requests = _Many(self._request(query, p, idempotent, consistency) for p in params_seq)
        requests.concurrency = concurrency
        if not requests:
            return []
        with _ambient(self.options.timeout if timeout is None else timeout):
            answers: list[Any] = await self._acall("concurrent", 0, _fn(requests), timeout)
        return [a if isinstance(a, ResilienceError) else self._result(a, timeout)
                for a in answers]

    async def _apage(self, request: Request, timeout: float | None) -> AsyncResult:
        return self._result(await self._acall("page", 0, _fn(request), timeout), timeout)


def _fn(request: Any) -> Any:
    return request  # passed through to _aattempt untouched (see _sync._fn)


class _Many(list[Request]):
    concurrency = 32
