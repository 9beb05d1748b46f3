"""What the sync and asyncio Cassandra clients share on top of the client base.

Endpoints: index 0 is ``"cluster"``, whose breaker counts only the calls that found no
host at all (the session did not connect, no host took the request); see
:meth:`CassandraBase._cluster_outcome`. Every host the session learns of gets its own
endpoint, named ``address:port``, with its own breaker. The driver would choose the
coordinator itself; here the client walks the query plan of the load-balancing policy
(token aware, data centre aware), takes the first host whose breaker grants a permit,
and sends the request to exactly that host (``host=``), so each outcome is recorded on
the breaker of the host that produced it (:mod:`._send`). A request that provably never
left (no connection to that host) goes on to the next host of the plan in the same
attempt; any other failure ends the attempt, and the core retries it, on another host
first, only if it is safe (:func:`~._errors.retry_safe`). While every host's breaker is
open a call fails at once with CircuitOpenError, doing no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from resilience.clients._base import ClientBase, _CallerError
from resilience.clients._errormap import ErrorMap, IdempotencyTable, idempotency_table
from resilience.clients.cassandra._errors import error_map, retry_safe
from resilience.clients.cassandra._options import CassandraOptions
from resilience.core.breaker import BreakerRegistry, BreakerState, CircuitBreaker
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.hedge import HedgePolicy
from resilience.core.retry import default_is_transient
from resilience.errors import BackendError, CircuitOpenError, ConfigError, ResilienceError

__all__ = ["CLUSTER", "IDEMPOTENT", "CassandraBase", "Request"]

D = TypeVar("D")
_monotonic = time.monotonic

_REJECTING = (BreakerState.OPEN, BreakerState.FORCED_OPEN)
_new = object.__new__

CLUSTER = "cluster"
"""The endpoint name of the cluster-level breaker (index 0)."""

IDEMPOTENT: IdempotencyTable = idempotency_table({
    # Each operation may be retried; whether one failure is, the statement's idempotency
    # and the error decide together (resilience.clients.cassandra._errors.retry_safe).
    "select": True,     # reads: idempotent
    "write": True,      # INSERT/UPDATE/DELETE/DDL: retried only when idempotent or not applied
    "batch": True,      # as write, for the batch as a whole
    "page": True,       # the next page of a read (paging_state is replay-safe)
    "prepare": True,    # preparing twice gives the same id
    "connect": True,    # nothing sent yet
})
"""Which operations the core may retry (docs/cassandra.md#idempotency)."""

_READ_PREFIXES = ("SELECT",)


def is_read(text: str) -> bool:
    """Whether a CQL text is a read (SELECT)."""
    return text.lstrip().lstrip("(").upper().startswith(_READ_PREFIXES)


class Request:
    """One statement to send: the statement, its parameters, its idempotency, and the
    host whose attempt failed last (a retry tries the other hosts first)."""

    __slots__ = ("failed_host", "idempotent", "op", "paging_state", "params", "statement")

    def __init__(self, statement: Any, params: Any, op: str, idempotent: bool,
                 paging_state: bytes | None = None) -> None:
        self.statement = statement
        self.params = params
        self.op = op
        self.idempotent = idempotent
        self.paging_state = paging_state
        self.failed_host: Any = None

    def replan(self, plan: Any) -> list[Any]:
        """The query plan of a retry: the host whose attempt failed last goes last."""
        host = self.failed_host
        hosts = list(plan)
        return [h for h in hosts if h != host] + [h for h in hosts if h == host]


class CassandraBase(ClientBase[D]):
    """What the sync and async Cassandra clients share: hosts, statements, errors.

    See :class:`~resilience.clients.cassandra.Cassandra` for the arguments.
    """

    service = "cassandra"
    options_class = CassandraOptions
    idempotent = IDEMPOTENT
    driver_modules = ("cassandra.cluster",)
    extra = "cassandra"
    # Every attempt sends to the driver with timeout= its deadline and waits at most
    # that long; nothing in it reads the ambient deadline, so the pipeline need not set
    # it (execute_concurrent sets it itself around its requests).
    ambient_deadline = False
    options: CassandraOptions

    def __init__(
        self,
        contact_points: str | Sequence[str] | None = None,
        *,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        events: EventBus | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **options: Any,
    ) -> None:
        if isinstance(contact_points, str):
            contact_points = [p.strip() for p in contact_points.split(",") if p.strip()]
        if contact_points is not None:
            contact_points = tuple(contact_points)
            if not contact_points:
                raise ConfigError("contact_points=[]: expected at least one host")
        opts: CassandraOptions = self._resolve(name, environ,
                                               {"contact_points": contact_points, **options})
        self._host_ids: dict[int, tuple[Any, int]] = {}  # id(Host) -> (Host, index)
        self._kinds: dict[str, bool] = {}  # CQL text -> is a read
        super().__init__([CLUSTER], opts, events=events, breakers=breakers, clock=clock)
        # Index 0's breaker in the pipeline: disabled (see _cluster_permit).
        self._cluster = self._breakers[0]
        self._breakers[0] = CircuitBreaker(replace(opts.breaker, enabled=False), name=CLUSTER)
        # The driver is imported by now (at construction, as the base requires); looked
        # up once here rather than by an import statement in every call.
        from cassandra.cluster import ResultSet
        from cassandra.query import BatchStatement, PreparedStatement, SimpleStatement

        self._statement_types = (BatchStatement, PreparedStatement, SimpleStatement)
        self._result_set = ResultSet
        # Hedged SELECT (opt-in, docs/hedging.md): the hedged methods are swapped in
        # here, so with hedging off the read path is untouched (._hedged).
        self._hedge = HedgePolicy(opts.hedge, clock) if opts.hedge.enabled else None
        if self._hedge is not None:
            self._enable_hedging()

    def _enable_hedging(self) -> None:
        raise NotImplementedError

    # ---- the client contract ----------------------------------------------------------

    def _error_map(self) -> ErrorMap:
        return error_map()

    def _build_driver(self) -> Any:
        from resilience.clients.cassandra._driver import Connector

        return Connector(self.options, self._skip)

    def _close_driver(self, driver: Any) -> None:
        driver.close()

    def _is_transient(self, exc: BaseException) -> bool:
        retryable = getattr(exc, "retryable", None)
        return default_is_transient(exc) if retryable is None else bool(retryable)

    # ---- the cluster breaker -------------------------------------------------------------

    # The pipeline runs every call with a disabled breaker at index 0 (it records
    # nothing); the real cluster breaker is asked here, inside the attempt, so that it
    # counts only what says the cluster as a whole is unreachable. A timeout or an error
    # of one host is that host's breaker's business: counted on the cluster breaker too,
    # one frozen node of three (whose failures also reach the other coordinators, which
    # ask it as a replica) opened it and stopped every read.

    def breaker(self, endpoint: str) -> CircuitBreaker:
        if endpoint == CLUSTER:
            return self._cluster
        return super().breaker(endpoint)

    def _cluster_permit(self, op: str, now: float) -> object:
        permit = self._cluster.acquire(now)
        if permit is None:
            raise self._cluster_open(op, now)
        return permit

    def _cluster_open(self, op: str, now: float) -> CircuitOpenError:
        return CircuitOpenError(service=self.service, endpoint=CLUSTER, operation=op,
                                retry_after=self._cluster.retry_after(now))

    def _cluster_outcome(self, permit: object, began: float, exc: BaseException | None) -> None:
        """Success when a host answered; failure when no host could be reached (the
        session did not connect, or no host took the request); nothing otherwise."""
        end = _monotonic()
        if exc is None:
            self._cluster.on_success(permit, end, end - began)
        elif isinstance(exc, ResilienceError):
            if isinstance(exc, BackendError) and exc.endpoint == CLUSTER:
                self._cluster.on_failure(permit, end, end - began)
            else:
                self._cluster.release(permit)  # one host's failure, or a rejection
        elif isinstance(exc, Exception) and not isinstance(exc, _CallerError):
            self._cluster.on_failure(permit, end, end - began)  # the connect failed
        else:
            self._cluster.release(permit)

    # ---- hosts -------------------------------------------------------------------------

    def _index_of(self, host: Any) -> int:
        """The endpoint index of ``host``, adding the endpoint the first time."""
        # By id(): a Host's __hash__/__eq__ go through its endpoint (3k instructions a
        # lookup, measured); the host object is kept beside its index, so an id reused
        # after a host left the metadata can never match. A new Host object for a known
        # address gets that address's index (_add_endpoint returns it).
        known = self._host_ids.get(id(host))
        if known is not None and known[0] is host:
            return known[1]
        index = self._add_endpoint(str(host.endpoint))
        self._host_ids[id(host)] = (host, index)
        return index

    def _skip(self, host: Any) -> bool:
        """For the load-balancing policy: leave ``host`` out while its breaker is open."""
        known = self._host_ids.get(id(host))
        if known is not None and known[0] is host:
            index = known[1]
        else:  # a Host object no request has used yet: by its address, if known
            endpoint = str(host.endpoint)
            if endpoint not in self._endpoints:
                return False
            index = self._endpoints.index(endpoint)
        breaker = self._breakers[index]
        # CLOSED (the usual case) has a standing permit: one attribute read. Otherwise
        # OPEN past its interval turns HALF_OPEN here and stays in the plan (the probe).
        return breaker._fast_permit is None and breaker.state(_monotonic()) in _REJECTING

    def _all_open(self, op: str) -> CircuitOpenError:
        now = _monotonic()
        waits = [b.retry_after(now) for b in self._breakers[1:]]
        return CircuitOpenError("every host's circuit is open", service=self.service,
                                endpoint=CLUSTER, operation=op,
                                retry_after=min(waits) if waits else 0.0)

    def _host_failure(self, exc: Exception, request: Request, index: int) -> BaseException:
        """The error of a failed request to host ``index``, saying whether it may be
        retried and whether the statement may have been applied."""
        err = self._failure(exc, request.op, index)
        if isinstance(err, BackendError):
            retryable, ambiguous = retry_safe(exc, request.idempotent)
            err.retryable = retryable  # type: ignore[attr-defined]
            err.ambiguous = ambiguous
        return err

    # ---- statements --------------------------------------------------------------------

    def _request(self, query: Any, params: Any, idempotent: bool | None,
                 consistency: str | None, paging_state: bytes | None = None,
                 fetch_size: int | None = None) -> Request:
        """A Request for ``query`` (text, statement or prepared statement); raises the
        caller's mistakes (bad consistency, bad bind values) here, before any I/O."""
        BatchStatement, PreparedStatement, SimpleStatement = self._statement_types
        if isinstance(query, PreparedStatement):  # the usual case first
            statement: Any = query.bind(params) if params is not None else query.bind(())
            params, text = None, query.query_string
        elif isinstance(query, str):
            statement, text = SimpleStatement(query, fetch_size=fetch_size), query
            fetch_size = None  # given to the statement
        elif isinstance(query, BatchStatement):
            statement, text = query, None
        else:
            statement, text = query, getattr(query, "query_string", "") or ""
        if consistency is not None:
            statement.consistency_level = _consistency(consistency)
        if fetch_size is not None:
            statement.fetch_size = fetch_size
        read: bool | None = False
        if text is None:
            op = "batch"
        else:
            read = self._kinds.get(text)
            if read is None:
                read = self._kinds[text] = is_read(text)
            op = "select" if read else "write"
        if idempotent is None:
            idempotent = read or bool(getattr(statement, "is_idempotent", False))
        # Request(...) without its __init__, a Python frame entered from C (0.8k
        # instructions a call, measured): the same six stores.
        request = _new(Request)
        request.statement = statement
        request.params = params
        request.op = op
        request.idempotent = idempotent
        request.paging_state = paging_state
        request.failed_host = None
        return request

    def _batch(self, statements: Any, kind: str, consistency: str | None,
               idempotent: bool | None) -> Request:
        from cassandra.query import BatchStatement, BatchType, PreparedStatement

        types = {"logged": BatchType.LOGGED, "unlogged": BatchType.UNLOGGED,
                 "counter": BatchType.COUNTER}
        if kind not in types:
            raise ValueError(f"kind={kind!r}: expected one of {', '.join(types)}")
        batch = BatchStatement(batch_type=types[kind])
        for item in statements:
            query, params = (item, None) if isinstance(item, str) else item
            if isinstance(query, PreparedStatement):
                batch.add(query, params if params is not None else ())
            else:
                batch.add(query, params)
        flag = bool(idempotent) and kind != "counter"
        batch.is_idempotent = flag
        return self._request(batch, None, flag, consistency)


def _consistency(name: str) -> int:
    from cassandra import ConsistencyLevel

    level = getattr(ConsistencyLevel, name.upper(), None)
    if not isinstance(level, int):
        raise ValueError(f"consistency={name!r}: expected a level such as 'one', "
                         "'local_quorum', 'quorum', 'all'")
    return level
