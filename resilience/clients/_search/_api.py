"""The public methods of both search clients, sync and asyncio: the driver's own API.

Each method takes the driver's own keyword arguments (elasticsearch-py: ``document=``,
``query=``, ``operations=``; opensearch-py: ``body=``) and passes them through
unchanged, plus ``timeout=``: the call's budget in seconds (a string such as ``"1s"``
is the server's own ``timeout`` parameter and goes to the server). The operation name
picks the retry rule: ``index`` without an ``id`` is ``index_auto_id`` and ``update``
with a script is ``update_script``, neither ever repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from resilience.clients._base import _CallerError
from resilience.clients._hedge import HEDGE_SUFFIX, acall_hedged, call_hedged, guard_context
from resilience.clients._search._bound import BOUND
from resilience.clients._search._bulk import BulkError, BulkRun, parse_actions
from resilience.clients._search._client import SearchBase, bulk_backoff
from resilience.core.deadline import DEADLINE, deadline
from resilience.core.pipeline import call
from resilience.errors import ResilienceError

__all__ = ["AsyncSearchAPI", "SearchAPI"]

_monotonic = time.monotonic


def _index_op(kwargs: Mapping[str, Any]) -> str:
    return "index" if kwargs.get("id") not in (None, "") else "index_auto_id"


def _update_op(kwargs: Mapping[str, Any]) -> str:
    body = kwargs.get("body")
    if kwargs.get("script") is not None or (isinstance(body, Mapping) and "script" in body):
        return "update_script"
    return "update"


def _method(name: str) -> Callable[[Any], Callable[..., Any]]:
    def make(kwargs: Any) -> Callable[[Any], Any]:
        return lambda raw: getattr(raw, name)(**kwargs)
    return make


def _send(client: SearchBase, index: int, name: str, kwargs: dict[str, Any], op: str,
          remaining: float) -> Any:
    """One attempt of a sync method: the driver's method ``name`` on node ``index``.

    The client base's attempt (``_base._attempt``: the lazy driver, the error mapped),
    SearchBase's (the request's deadline stored for the pool, 429 back-pressure) and
    the driver call in one frame, instead of three and a closure: the healthy ``get``
    is the wrapper's most frequent call. Keep it in step with those two.
    """
    try:
        driver = client._driver._value
        if driver is None:
            began = _monotonic()
            driver = client._driver.get()
            remaining -= _monotonic() - began
        raw = driver.raws[index]
        prev = BOUND.at
        at = BOUND.at = _monotonic() + remaining
        try:
            return getattr(raw, name)(**kwargs)
        except Exception as exc:
            if client._status(exc) != 429:
                raise
            return client._throttled(raw, _method(name)(kwargs), exc,
                                     _monotonic() - at + remaining)
        finally:
            BOUND.at = prev
    except Exception as exc:
        raise client._failure(exc, op, index)  # noqa: B904 (cause set there)


class SearchAPI(SearchBase):
    """Sync methods: each one call through the pipeline on the node chosen by breaker."""

    def _run(self, op: str, name: str, timeout: float | str | None,
             kwargs: dict[str, Any]) -> Any:
        # The client base's _call, inline, with _send as the attempt (see there); _budget
        # and _pick only when they have something to do (a str timeout, several nodes).
        budget = self._budget(timeout, kwargs) if isinstance(timeout, str) else timeout
        index = self._pick() if len(self._breakers) > 1 else 0
        if self._driver._closed:
            raise self._closed_error(op, index)
        try:
            operation = self._ops[index][op]
        except KeyError:
            operation = self._op(op, index)
        try:
            return call(operation, self._breakers[index],
                        partial(_send, self, index, name, kwargs, op), budget)
        except _CallerError as err:
            raise self._caller_error(err.exc, op) from err.exc

    def search(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The driver's ``search``; retried (idempotent)."""
        return self._run("search", "search", timeout, kwargs)

    def _hedged(self, op: str, timeout: float | str | None, kwargs: dict[str, Any]) -> Any:
        # get/search with hedging on (docs/hedging.md): the hedge goes to another node;
        # the loser's socket is shut down (its pool's connections bind it to the token).
        hedge = self._hedge
        assert hedge is not None
        budget = self._budget(timeout, kwargs)
        first, other, at = self._hedge_plan(budget)

        def fn(raw: Any) -> Any:
            return getattr(raw, op)(**kwargs)

        return call_hedged(
            hedge, lambda t: self._call(op, first, guard_context(t, fn), budget),
            lambda t: self._call(op + HEDGE_SUFFIX, other, guard_context(t, fn)),
            at, self.events, self.service, op, self._endpoints[other])

    def _hedged_get(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._hedged("get", timeout, kwargs)

    def _hedged_search(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._hedged("search", timeout, kwargs)

    def get(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The driver's ``get``; a missing document raises the driver's NotFoundError
        (an outcome: not counted against the node)."""
        return self._run("get", "get", timeout, kwargs)

    def mget(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("mget", "mget", timeout, kwargs)

    def count(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("count", "count", timeout, kwargs)

    def exists(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("exists", "exists", timeout, kwargs)

    def msearch(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("msearch", "msearch", timeout, kwargs)

    def index(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The driver's ``index``: retried with an ``id``, never without one."""
        return self._run(_index_op(kwargs), "index", timeout, kwargs)

    def create(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("create", "create", timeout, kwargs)

    def update(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The driver's ``update``: retried with a partial doc, never with a script."""
        return self._run(_update_op(kwargs), "update", timeout, kwargs)

    def delete(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("delete", "delete", timeout, kwargs)

    def scroll(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The next page of a scroll: never retried (a repeat would skip a page); prefer
        ``search`` with a point in time and ``search_after``."""
        return self._run("scroll", "scroll", timeout, kwargs)

    def clear_scroll(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return self._run("clear_scroll", "clear_scroll", timeout, kwargs)

    def open_point_in_time(self, *, timeout: float | str | None = None,
                           **kwargs: Any) -> Any:
        """Open a point in time (Elasticsearch ``open_point_in_time``, OpenSearch
        ``create_pit``): with ``search(... search_after=...)`` a replay-safe way to page."""
        return self._run("open_point_in_time", self.pit_methods[0], timeout, kwargs)

    def close_point_in_time(self, *, timeout: float | str | None = None,
                            **kwargs: Any) -> Any:
        """Close a point in time (``close_point_in_time`` / ``delete_pit``)."""
        return self._run("close_point_in_time", self.pit_methods[1], timeout, kwargs)

    def health(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """``GET _cluster/health`` (never ``info()``/``ping()``: some distributions lack
        the root endpoint, and ``ping()`` hides every error)."""
        budget = self._budget(timeout, kwargs)
        return self._call("health", self._pick(), lambda raw: raw.cluster.health(**kwargs),
                          budget)

    def run(self, fn: Callable[[Any], Any], *, op: str = "run",
            timeout: float | None = None) -> Any:
        """``fn(raw_client)`` on one node through the pipeline, for any other driver call
        (``lambda es: es.indices.create(index="docs")``); never retried unless ``op`` is
        an idempotent name of the table. ``fn`` runs under the call's deadline as the
        ambient one (other clients it calls keep it)."""
        with deadline(self.options.timeout if timeout is None else timeout,
                      clock=self._clock):  # the pipeline reads it on this clock
            return self._call(op, self._pick(), fn, timeout)

    def bulk(self, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """The driver's ``bulk``; items that failed with 429/502/503/504 are sent again
        within the deadline; returns the reply when every item succeeded.

        Raises:
            BulkError: some items failed for good (``.failed``: position, status, reason).
        """
        run = BulkRun(parse_actions(kwargs.pop(self.bulk_key)))
        budget = self.options.timeout if timeout is None else timeout
        with deadline(budget):
            while run.pending:
                body = {**kwargs, self.bulk_key: run.body()}
                try:
                    reply = self._call("bulk", self._pick(), _method("bulk")(body))
                except ResilienceError as exc:
                    if run.rounds == 0:
                        raise
                    raise BulkError([i for i in run.items if i is not None], run.last,
                                    service=self.service, operation="bulk") from exc
                run.pending = run.record(reply)
                if not run.pending:
                    break
                pause = bulk_backoff(self.options, run.rounds)
                at = DEADLINE.get()
                if at is None or _monotonic() + pause >= at:
                    break
                time.sleep(pause)
                self._count("bulk_item_retries", len(run.pending))
        return run.outcome({"service": self.service, "operation": "bulk"})


class AsyncSearchAPI(SearchBase):
    """asyncio methods: the same as :class:`SearchAPI`, awaited."""

    async def _run(self, op: str, name: str, timeout: float | str | None,
                   kwargs: dict[str, Any]) -> Any:
        budget = self._budget(timeout, kwargs)
        return await self._acall(op, self._pick(),
                                 lambda raw: getattr(raw, name)(**kwargs), budget)

    async def search(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("search", "search", timeout, kwargs)

    async def _hedged(self, op: str, timeout: float | str | None,
                      kwargs: dict[str, Any]) -> Any:
        # As the sync one; the attempts run on worker threads, so the loser is stopped
        # through its token (its socket shut down) as well as by cancelling its task.
        hedge = self._hedge
        assert hedge is not None
        budget = self._budget(timeout, kwargs)
        first, other, at = self._hedge_plan(budget)

        def fn(raw: Any) -> Any:
            return getattr(raw, op)(**kwargs)

        return await acall_hedged(
            hedge, lambda t: self._acall(op, first, guard_context(t, fn), budget),
            lambda t: self._acall(op + HEDGE_SUFFIX, other, guard_context(t, fn)),
            at, self.events, self.service, op, self._endpoints[other])

    async def _hedged_get(self, *, timeout: float | str | None = None,
                          **kwargs: Any) -> Any:
        return await self._hedged("get", timeout, kwargs)

    async def _hedged_search(self, *, timeout: float | str | None = None,
                             **kwargs: Any) -> Any:
        return await self._hedged("search", timeout, kwargs)

    async def get(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("get", "get", timeout, kwargs)

    async def mget(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("mget", "mget", timeout, kwargs)

    async def count(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("count", "count", timeout, kwargs)

    async def exists(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("exists", "exists", timeout, kwargs)

    async def msearch(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("msearch", "msearch", timeout, kwargs)

    async def index(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run(_index_op(kwargs), "index", timeout, kwargs)

    async def create(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("create", "create", timeout, kwargs)

    async def update(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run(_update_op(kwargs), "update", timeout, kwargs)

    async def delete(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("delete", "delete", timeout, kwargs)

    async def scroll(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("scroll", "scroll", timeout, kwargs)

    async def clear_scroll(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        return await self._run("clear_scroll", "clear_scroll", timeout, kwargs)

    async def open_point_in_time(self, *, timeout: float | str | None = None,
                                 **kwargs: Any) -> Any:
        return await self._run("open_point_in_time", self.pit_methods[0], timeout, kwargs)

    async def close_point_in_time(self, *, timeout: float | str | None = None,
                                  **kwargs: Any) -> Any:
        return await self._run("close_point_in_time", self.pit_methods[1], timeout, kwargs)

    async def health(self, *, timeout: float | str | None = None, **kwargs: Any) -> Any:
        budget = self._budget(timeout, kwargs)
        return await self._acall("health", self._pick(),
                                 lambda raw: raw.cluster.health(**kwargs), budget)

    async def run(self, fn: Callable[[Any], Any], *, op: str = "run",
                  timeout: float | None = None) -> Any:
        """``fn(raw_client)`` (a sync driver call, run on a worker thread, under the
        call's deadline as the ambient one)."""
        with deadline(self.options.timeout if timeout is None else timeout,
                      clock=self._clock):
            return await self._acall(op, self._pick(), fn, timeout)

    async def bulk(self, *, timeout: float | None = None, **kwargs: Any) -> Any:
        run = BulkRun(parse_actions(kwargs.pop(self.bulk_key)))
        budget = self.options.timeout if timeout is None else timeout
        with deadline(budget):
            while run.pending:
                body = {**kwargs, self.bulk_key: run.body()}
                try:
                    reply = await self._acall("bulk", self._pick(), _method("bulk")(body))
                except ResilienceError as exc:
                    if run.rounds == 0:
                        raise
                    raise BulkError([i for i in run.items if i is not None], run.last,
                                    service=self.service, operation="bulk") from exc
                run.pending = run.record(reply)
                if not run.pending:
                    break
                pause = bulk_backoff(self.options, run.rounds)
                at = DEADLINE.get()
                if at is None or _monotonic() + pause >= at:
                    break
                await asyncio.sleep(pause)
                self._count("bulk_item_retries", len(run.pending))
        return run.outcome({"service": self.service, "operation": "bulk"})
