"""What the Elasticsearch and OpenSearch clients share on top of the client base.

One raw driver client per node, each built with the driver's retries and sniffing off
and a pool that keeps the deadline (:mod:`._http`); the node a call goes to is chosen
here, by its breaker, not by the driver's node pool (whose dead-node marking and forced
resurrection never fail fast). So:

- **Nodes by breaker.** Calls go round-robin to the nodes whose breaker is not open;
  when every breaker is open the call is rejected without I/O (``CircuitOpenError``).
- **One retry decides, on another node.** The driver never retries (``max_retries=0``,
  no retry on status or timeout); the core retries what :data:`IDEMPOTENT` allows, and
  with several nodes each retry goes to the next node round-robin whose breaker admits
  calls (:meth:`SearchBase._route`), under the same deadline, retry budget and backoff.
- **429 is back-pressure, not a dead node.** A 429 reply is retried inside the attempt
  with full-jitter backoff while the deadline and the retry budget allow (any operation:
  the server did not apply it), counted in :attr:`SearchBase.throttled`; it records a
  success on the node's breaker (the node answered). A 429 still there at the deadline
  is a ``BackendUnavailableError`` ("throttled").
- **Errors by status.** 404, 409 and the other 4xx replies pass through as the driver's
  own exception (``NotFoundError``, ``ConflictError``...): outcomes or the caller's
  mistakes, not counted against the node. 502/503/504 -> ``BackendUnavailableError``,
  other 5xx -> ``BackendError``; a connect timeout -> ``BackendTimeoutError`` (also when
  opensearch-py calls it ``ConnectionError('N/A')``); a full connection pool ->
  ``BulkheadFullError``, without I/O.

A thin package per driver supplies how to build one node's raw client and how to read
a status and the underlying urllib3 error off the driver's exceptions.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.clients._base import ClientBase, _CallerError
from resilience.clients._errormap import IdempotencyTable, idempotency_table
from resilience.clients._hedge import deadline_at
from resilience.clients._search._bound import BOUND
from resilience.clients._search._options import SearchOptions, parse_host
from resilience.core.breaker import BreakerRegistry, BreakerState, CircuitBreaker
from resilience.core.bulkhead import Bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.hedge import HedgePolicy
from resilience.core.operation import Operation
from resilience.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
    ConfigError,
    ResilienceError,
)

if TYPE_CHECKING:
    from urllib3.connectionpool import HTTPConnectionPool

__all__ = ["IDEMPOTENT", "WRITES", "SearchBase", "SearchDriver"]

_monotonic = time.monotonic
_BLOCKED = (BreakerState.OPEN, BreakerState.FORCED_OPEN)

IDEMPOTENT: IdempotencyTable = idempotency_table({
    "search": True,
    "get": True,
    "mget": True,
    "count": True,
    "exists": True,
    "msearch": True,
    "health": True,             # GET _cluster/health
    "index": True,              # with an explicit id: a repeat writes the same document
    "delete": True,             # a repeat finds nothing to delete (404, an outcome)
    "update": True,             # a partial doc: a repeat is a no-op
    "open_point_in_time": True,  # a repeat opens a second PIT, which expires on its own
    "close_point_in_time": True,
    "clear_scroll": True,
    # Not idempotent: a repeat after a lost reply changes the outcome or the state.
    "index_auto_id": False,     # a second document with a new id
    "create": False,            # the repeat sees our own first write: 409
    "update_script": False,     # the script runs twice (ctx._source.n += 1)
    "bulk": False,              # as a whole; its failed items are retried one by one
    "scroll": False,            # a server cursor: a repeat silently skips a page
})
"""Which operations a retry may repeat (docs/architecture.md#safe-retries)."""

WRITES = frozenset({"index", "index_auto_id", "create", "update", "update_script", "delete",
                    "bulk"})
"""Operations that change documents: a timeout or a lost reply after the request may have
been sent leaves them applied or not (``BackendError.ambiguous``)."""


class SearchDriver:
    """The lazily built driver: one raw client per node, their pools, a thread pool for
    the asyncio clients (made on first use)."""

    __slots__ = ("_executor", "_lock", "pools", "raws")

    def __init__(self, raws: tuple[Any, ...], pools: tuple[HTTPConnectionPool, ...]) -> None:
        self.raws = raws
        self.pools = pools
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self, workers: int) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(workers, "resilience-search")
                executor = self._executor
        return executor

    def close(self, close_raw: Callable[[Any], None]) -> None:
        from resilience.clients._search._http import shutdown_pool

        for pool in self.pools:
            shutdown_pool(pool)
        for raw in self.raws:
            close_raw(raw)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class SearchBase(ClientBase[SearchDriver]):
    """Nodes, per-node selection by breaker, 429 back-pressure and the error rules.

    See the client classes (``resilience.clients.elasticsearch.Elasticsearch``) for the
    arguments.
    """

    idempotent = IDEMPOTENT
    # Every attempt is a driver call whose requests its pool bounds by the deadline the
    # attempt stores for its thread (._bound): the pipeline need not set the ambient
    # one (run() sets it for the code it runs).
    ambient_deadline = False
    options: SearchOptions
    bulk_key: ClassVar[str]  # the bulk body's keyword: "operations" or "body"
    pit_methods: ClassVar[tuple[str, str]]  # the driver's open / close point-in-time

    def __init__(
        self,
        hosts: str | Iterable[str] | None = None,
        *,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        events: EventBus | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **options: Any,
    ) -> None:
        if isinstance(hosts, str):
            hosts = [h.strip() for h in hosts.split(",") if h.strip()]
        elif hosts is not None:
            hosts = list(hosts)
            if not hosts:
                raise ConfigError("hosts=[]: expected at least one http(s)://host:port")
        if hosts is not None and any("@" in h for h in hosts):
            # Said without the value: it holds a password.
            raise ConfigError("hosts: a URL with credentials (not shown); use username/"
                              "password or api_key, which are kept secret")
        opts: SearchOptions = self._resolve(
            name, environ, {"hosts": tuple(hosts) if hosts is not None else None, **options})
        self._urls: list[str] = []
        endpoints = []
        for item in opts.hosts:
            scheme, host, port = parse_host(item)
            shown = f"[{host}]" if ":" in host else host
            self._urls.append(f"{scheme}://{shown}:{port}")
            endpoints.append(f"{shown}:{port}")
        self._next = itertools.count()
        self._count_lock = threading.Lock()
        self.throttled = 0
        """429 replies retried with backoff so far (back-pressure, not failures)."""
        self.bulk_item_retries = 0
        """Bulk items sent again after a retryable item status so far."""
        super().__init__(endpoints, opts, events=events, breakers=breakers, clock=clock)
        # Hedged get and search (opt-in, docs/hedging.md): the hedged methods are
        # swapped in here, so with hedging off the read path is untouched.
        self._hedge = HedgePolicy(opts.hedge, clock) if opts.hedge.enabled else None
        if self._hedge is not None:
            self.get = self._hedged_get  # type: ignore[attr-defined]
            self.search = self._hedged_search  # type: ignore[attr-defined]

    # ---- what a driver package provides ---------------------------------------------

    def _new_raw(self, url: str) -> tuple[Any, HTTPConnectionPool]:
        """One node's raw client (retries and sniffing off, pool hardened) and its pool."""
        raise NotImplementedError

    def _close_raw(self, raw: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def _status(exc: BaseException) -> int | None:
        """The HTTP status of a driver exception, None when no reply came."""
        raise NotImplementedError

    @staticmethod
    def _root(exc: BaseException) -> BaseException | None:
        """The urllib3 exception behind a driver's transport error, if any."""
        raise NotImplementedError

    def _server_timeout(self, kwargs: dict[str, Any]) -> None:
        """Adjust the arguments of a call that passes a server-side ``timeout``."""

    # ---- the client base's hooks ---------------------------------------------------

    def _build_driver(self) -> SearchDriver:
        built = [self._new_raw(url) for url in self._urls]
        if self._hedge is not None:
            from resilience.clients._search._http import make_cancellable

            for _, pool in built:
                make_cancellable(pool)
        return SearchDriver(tuple(b[0] for b in built), tuple(b[1] for b in built))

    def _close_driver(self, driver: SearchDriver) -> None:
        driver.close(self._close_raw)

    def _attempt(self, driver: SearchDriver, index: int, fn: Callable[[Any], Any],
                 remaining: float, op: str) -> Any:
        # The request's deadline for the pool and its sockets, what was there restored
        # after (an attempt may run inside another's: a run() calling another client).
        # The sync methods' fast path, _api._send, does the same inline.
        raw = driver.raws[index]
        prev = BOUND.at
        at = BOUND.at = _monotonic() + remaining
        try:
            return fn(raw)
        except Exception as exc:
            if self._status(exc) != 429:
                raise
            return self._throttled(raw, fn, exc, _monotonic() - at + remaining)
        finally:
            BOUND.at = prev

    async def _aattempt(self, driver: SearchDriver, index: int, fn: Callable[[Any], Any],
                        remaining: float, op: str) -> Any:
        # The drivers' own asyncio clients need aiohttp; the sync driver runs on a worker
        # thread instead, under the same deadline (its sockets end by it), so the thread is
        # free again by the deadline and the event loop never blocks.
        workers = self.options.pool_size * len(self._urls)
        ctx = contextvars.copy_context()  # carries the deadline to the worker
        return await asyncio.get_running_loop().run_in_executor(
            driver.executor(workers), ctx.run, self._attempt, driver, index, fn, remaining, op)

    def _health_probe(self, index: int, timeout: float) -> None:
        # Both clients, the async one too: its calls run the sync driver on worker
        # threads, so its probes run on the shared prober thread like the sync ones.
        from resilience.clients._search._probe import probe_node

        probe_node(self._urls[index], self.options, timeout)

    def _throttled(self, raw: Any, fn: Callable[[Any], Any], exc: Exception,
                   took: float) -> Any:
        """Retry a 429 with full-jitter backoff while the deadline and budget allow:
        only when a request as long as the first (``took``) still fits after the pause,
        so the call ends as throttled, not as a timeout of a last attempt cut short."""
        retry = self.options.retry
        budget = self._retry.budget
        for n in itertools.count():
            at = BOUND.at  # the attempt's (set by the caller, _attempt or _api._send)
            now = _monotonic()
            delay = max(0.001, random.uniform(0, min(retry.max_backoff, retry.backoff * 2 ** n)))
            if at is None or now + delay + took >= at or (budget is not None
                                                  and not budget.try_withdraw(now)):
                raise exc
            time.sleep(delay)
            with self._count_lock:
                self.throttled += 1
            try:
                return fn(raw)
            except Exception as again:
                if self._status(again) != 429:
                    raise
                exc = again
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, exc: Exception, op: str, index: int) -> BaseException:
        if isinstance(exc, ResilienceError) or self._driver._closed:
            return super()._failure(exc, op, index)
        endpoint = self._endpoints[index]
        status = self._status(exc)
        err: ResilienceError
        if status is not None:
            if status == 429 or 400 <= status < 500:
                return _CallerError(exc)  # an outcome or the caller's: not the node's fault
            kind = BackendUnavailableError if status in (502, 503, 504) else BackendError
            err = kind(f"HTTP {status}: {type(exc).__name__}", service=self.service,
                       endpoint=endpoint, operation=op)
        else:
            root = self._root(exc)
            pool_full, connect_timeout, refused = _urllib3_errors()
            if isinstance(root, pool_full):
                return BulkheadFullError(
                    f"all {self.options.pool_size} connections to {endpoint} are busy",
                    service=self.service, endpoint=endpoint, operation=op)
            if isinstance(root, connect_timeout) and not isinstance(root, refused):
                err = BackendTimeoutError(f"connect timed out: {type(exc).__name__}",
                                          service=self.service, endpoint=endpoint,
                                          operation=op)
            else:
                mapped = super()._failure(exc, op, index)
                # Not refused and not a connect timeout: the request may have reached the
                # node, which may still apply a write the reply of which was lost.
                if (op in WRITES and isinstance(mapped, BackendError)
                        and not isinstance(root, connect_timeout)):
                    mapped.ambiguous = True
                return mapped
        if status == 504 and op in WRITES:
            err.ambiguous = True  # a gateway gave up waiting; the node may still apply it
        err.__cause__ = exc
        return err

    def _caller_error(self, exc: BaseException, op: str) -> BaseException:
        if self._status(exc) == 429:
            return BackendUnavailableError(
                "throttled: the server still answered 429 (too many requests) at the "
                "deadline", service=self.service, operation=op)
        return exc

    def _operation(self, name: str, idempotent: bool, bulkhead: Bulkhead | None,
                   kind: str = "first") -> Operation:
        # Failover is a route on the operations that retry at all (idempotent, retries
        # on): the core keeps deciding whether, when and how often to retry, only the
        # node changes. One node, or an operation that never retries: no route.
        operation = super()._operation(name, idempotent, bulkhead, kind)
        if operation.retry is not None and len(self._urls) > 1:
            operation.route = self._route
        return operation

    # ---- node choice ---------------------------------------------------------------

    def _route(self, failed: CircuitBreaker, attempt: Callable[[float], Any]
               ) -> tuple[CircuitBreaker, Callable[[float], Any]]:
        """Where the retry of an attempt that failed on ``failed`` goes (the core's
        :data:`~resilience.core.operation.Route`): the same attempt on the next node,
        round-robin from the failed one, whose breaker admits calls.

        Round-robin from the node that just failed visits every other node before it
        comes back, so a retry never returns to a node that failed in this call while
        another admits calls; with every other breaker open the retry stays where it
        was (the core then stops if that breaker is open too). Why a core route and not
        a failover loop here: the retry decision (transient? attempts left? fits the
        deadline after the backoff? budget?) stays in one place, the healthy path is
        the same code (the route runs only after a failed attempt), and each attempt's
        outcome goes to its own node's breaker through the pipeline's own recording.
        The bulkhead permit taken for the first node covers the call; the other node's
        connection pool still bounds its connections (``pool_timeout``).
        """
        breakers = self._breakers
        n = len(breakers)
        # ``attempt`` is a partial of a module function whose arguments are the client,
        # the node's index and the rest: the base's partial(_attempt, client, index,
        # fn, op) or the sync methods' partial(_send, client, index, name, kwargs, op).
        args = attempt.args  # type: ignore[attr-defined]
        index: int = args[1]
        now = self._clock.monotonic()
        for k in range(1, n):
            i = (index + k) % n
            if breakers[i].state(now) not in _BLOCKED:
                return breakers[i], partial(attempt.func, args[0], i,  # type: ignore[attr-defined]
                                            *args[2:])
        return failed, attempt


    def _pick(self) -> int:
        """The next node, round-robin, skipping nodes whose breaker is open."""
        breakers = self._breakers
        n = len(breakers)
        if n == 1:
            return 0
        start = next(self._next)
        now = self._clock.monotonic()
        for k in range(n):
            i = (start + k) % n
            if breakers[i].state(now) not in _BLOCKED:
                return i
        return start % n  # every breaker open: this call is rejected without I/O

    def _pick_other(self, first: int) -> int:
        """Where the hedge of a read sent to node ``first`` goes: the next node whose
        breaker admits calls, else ``first`` itself (another pooled connection)."""
        breakers = self._breakers
        n = len(breakers)
        now = self._clock.monotonic()
        for k in range(1, n):
            i = (first + k) % n
            if breakers[i].state(now) not in _BLOCKED:
                return i
        return first

    def _hedge_plan(self, budget: float | None) -> tuple[int, int, float]:
        """(first node, hedge node, the absolute deadline both share) of a hedged read."""
        first = self._pick()
        at = deadline_at(self._clock.monotonic(),
                         self.options.timeout if budget is None else budget)
        return first, self._pick_other(first), at

    def _budget(self, timeout: float | str | None, kwargs: dict[str, Any]) -> float | None:
        # A str timeout ("1s") is the server's own parameter (search, index, bulk...):
        # it goes to the server; the call's budget is then the default.
        if isinstance(timeout, str):
            kwargs["timeout"] = timeout
            self._server_timeout(kwargs)
            return None
        return timeout

    def _count(self, attr: str, n: int) -> None:
        with self._count_lock:
            setattr(self, attr, getattr(self, attr) + n)


@cache
def _urllib3_errors() -> tuple[type[Exception], type[Exception], type[Exception]]:
    # Imported on first use: importing the client packages imports no driver (urllib3 is
    # what both drivers send through). In urllib3 2 a refused connect
    # (NewConnectionError) is a ConnectTimeoutError too, hence the third.
    from urllib3.exceptions import ConnectTimeoutError, EmptyPoolError, NewConnectionError

    return EmptyPoolError, ConnectTimeoutError, NewConnectionError


def bulk_backoff(options: SearchOptions, round_no: int) -> float:
    """Full-jitter backoff before bulk round ``round_no`` (1 for the first retry)."""
    retry = options.retry
    return max(0.001, random.uniform(0, min(retry.max_backoff,
                                             retry.backoff * 2 ** (round_no - 1))))
