"""What the sync and asyncio Cassandra clients share on top of the client base.

Endpoints: index 0 is ``"cluster"``, the breaker of the whole call (the pipeline's): it
opens when most calls fail whatever host they went to, for example when no host can be
reached at all. Every host the session learns of gets its own endpoint, named
``address:port``, with its own breaker. The driver would choose the coordinator itself;
here the client walks the query plan of the load-balancing policy (token aware, data
centre aware, without the hosts whose breaker is open), takes the first host whose
breaker grants a permit, and sends the request to exactly that host (``host=``), so
each outcome is recorded on the breaker of the host that produced it. A request that
provably never left (no connection to that host) goes on to the next host of the plan
in the same attempt; any other failure ends the attempt, and the core retries it on
another host only if it is safe (:func:`~._errors.retry_safe`). While every host's
breaker is open a call fails at once with CircuitOpenError, doing no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from resilience.clients._base import ClientBase
from resilience.clients._errormap import ErrorMap, IdempotencyTable, idempotency_table
from resilience.clients.cassandra._errors import error_map, never_sent, retry_safe
from resilience.clients.cassandra._options import CassandraOptions
from resilience.core.breaker import BreakerRegistry, BreakerState
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.retry import default_is_transient
from resilience.errors import BackendError, CircuitOpenError, ConfigError

__all__ = ["CLUSTER", "IDEMPOTENT", "CassandraBase", "Request"]

D = TypeVar("D")
_monotonic = time.monotonic

_REJECTING = (BreakerState.OPEN, BreakerState.FORCED_OPEN)

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
    """One statement to send: the statement, its parameters, its idempotency."""

    __slots__ = ("idempotent", "op", "paging_state", "params", "statement")

    def __init__(self, statement: Any, params: Any, op: str, idempotent: bool,
                 paging_state: bytes | None = None) -> None:
        self.statement = statement
        self.params = params
        self.op = op
        self.idempotent = idempotent
        self.paging_state = paging_state


class CassandraBase(ClientBase[D]):
    """What the sync and async Cassandra clients share: hosts, statements, errors.

    See :class:`~resilience.clients.cassandra.Cassandra` for the arguments.
    """

    service = "cassandra"
    options_class = CassandraOptions
    idempotent = IDEMPOTENT
    driver_modules = ("cassandra.cluster",)
    extra = "cassandra"
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
        self._host_index: dict[Any, int] = {}
        self._kinds: dict[str, bool] = {}  # CQL text -> is a read
        super().__init__([CLUSTER], opts, events=events, breakers=breakers, clock=clock)
        # The driver is imported by now (at construction, as the base requires); looked
        # up once here rather than by an import statement in every call.
        from cassandra.query import BatchStatement, PreparedStatement, SimpleStatement

        self._statement_types = (BatchStatement, PreparedStatement, SimpleStatement)

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

    # ---- hosts -------------------------------------------------------------------------

    def _index_of(self, host: Any) -> int:
        index = self._host_index.get(host)
        if index is None:
            index = self._host_index[host] = self._add_endpoint(str(host.endpoint))
        return index

    def _skip(self, host: Any) -> bool:
        """For the load-balancing policy: leave ``host`` out while its breaker is open."""
        index = self._host_index.get(host)
        if index is None:
            return False
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
            err.ambiguous = ambiguous  # type: ignore[attr-defined]
        return err

    # ---- statements --------------------------------------------------------------------

    def _request(self, query: Any, params: Any, idempotent: bool | None,
                 consistency: str | None, paging_state: bytes | None = None,
                 fetch_size: int | None = None) -> Request:
        """A Request for ``query`` (text, statement or prepared statement); raises the
        caller's mistakes (bad consistency, bad bind values) here, before any I/O."""
        BatchStatement, PreparedStatement, SimpleStatement = self._statement_types

        if isinstance(query, str):
            statement: Any = SimpleStatement(query, fetch_size=fetch_size)
            text = query
        elif isinstance(query, PreparedStatement):
            statement = query.bind(params) if params is not None else query.bind(())
            params, text = None, query.query_string
        elif isinstance(query, BatchStatement):
            statement, text = query, ""
        else:
            statement, text = query, getattr(query, "query_string", "") or ""
        if consistency is not None:
            statement.consistency_level = _consistency(consistency)
        if fetch_size is not None and not isinstance(query, str):
            statement.fetch_size = fetch_size
        if isinstance(statement, BatchStatement):
            op, read = "batch", False
        else:
            known = self._kinds.get(text)
            if known is None:
                known = self._kinds[text] = is_read(text)
            read = known
            op = "select" if read else "write"
        flag = read or bool(getattr(statement, "is_idempotent", False))
        return Request(statement, params, op, flag if idempotent is None else idempotent,
                       paging_state)

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


class Flight:
    """A request sent to one host, waiting for its answer."""

    __slots__ = ("began", "future", "index", "permit", "request")

    def __init__(self, future: Any, index: int, permit: object, began: float,
                 request: Request) -> None:
        self.future = future
        self.index = index
        self.permit = permit
        self.began = began
        self.request = request


def _send_statement(session: Any, request: Request, host: Any, left: float) -> Any:
    return session.execute_async(request.statement, request.params, timeout=left,
                                 paging_state=request.paging_state, host=host)


def _send_prepare(session: Any, request: Request, host: Any, left: float) -> Any:
    # Session.prepare() without its fixed 10 s per host: the same message on one host,
    # under this attempt's time (cassandra/cluster.py, Session.prepare).
    from cassandra.cluster import ResponseFuture
    from cassandra.protocol import PrepareMessage

    future = ResponseFuture(session, PrepareMessage(query=request.statement), None, left,
                            host=host)
    future.send_request()
    return future


class Sender:
    """Picks the host and records its outcome; the sync and async clients wait."""

    def _start(self: Any, connector: Any, session: Any, request: Request,
               deadline: float) -> Flight:
        """Send ``request`` to the first host of the plan whose breaker admits it.

        Raises (mapped): every host's breaker open (CircuitOpenError, no I/O), no host
        took it (BackendUnavailableError, retry-safe), the deadline is spent.
        """
        send = _send_prepare if request.op == "prepare" else _send_statement
        plan_query = None if request.op == "prepare" else request.statement
        breakers = self._breakers
        now = _monotonic()
        errors: dict[Any, BaseException] = {}  # hosts that refused it unsent
        skipped = 0
        for host in connector.policy.child.make_query_plan(session.keyspace, plan_query):
            index = self._index_of(host)
            breaker = breakers[index]
            permit = breaker.acquire(now)
            if permit is None:
                skipped += 1
                continue
            left = deadline - now
            if left <= 0.0:
                breaker.release(permit)
                break
            try:
                future = send(session, request, host, left)
            except Exception as exc:  # raised on this thread: not sent (or a caller error)
                self._record(breaker, permit, now, exc)
                raise self._host_failure(exc, request, index) from exc
            failed = future._final_exception
            if failed is not None and never_sent(failed):
                # The driver had no connection to it: nothing left; try the next host.
                end = _monotonic()
                breaker.on_failure(permit, end, end - now)
                errors[host] = failed
                now = end
                continue
            return Flight(future, index, permit, now, request)
        if errors or not skipped:
            # Every host refused it unsent, or the driver knows no live host at all.
            from cassandra.cluster import NoHostAvailable

            nha = NoHostAvailable("no host took the request" if errors else
                                  "no live host (the driver marked every host down)", errors)
            raise self._host_failure(nha, request, 0)
        if _monotonic() >= deadline:
            from cassandra import OperationTimedOut

            raise self._host_failure(OperationTimedOut("deadline spent before sending"),
                                     request, 0)
        raise self._all_open(request.op)

    def _record(self: Any, breaker: Any, permit: object, began: float,
                exc: BaseException | None) -> None:
        end = _monotonic()
        if exc is None:
            breaker.on_success(permit, end, end - began)
            return
        rule = self._errors.rule(exc)
        if rule is not None and rule[1] is None:
            breaker.on_success(permit, end, end - began)  # the host answered: our mistake
        else:
            breaker.on_failure(permit, end, end - began)

    def _finish(self: Any, flight: Flight, exc: BaseException | None = None) -> Any:
        """Record the host's outcome; the driver's ResultSet, or raise the mapped error."""
        future = flight.future
        if exc is None:
            exc = future._final_exception
        self._record(self._breakers[flight.index], flight.permit, flight.began, exc)
        if exc is not None:
            raise self._host_failure(exc, flight.request, flight.index) from exc
        return future.result()

    def _late(self: Any, flight: Flight) -> BaseException:
        """The error for a future the driver did not end within the deadline."""
        from cassandra import OperationTimedOut

        host = flight.future._current_host
        flight.future.clear_callbacks()
        key = str(getattr(host, "endpoint", host))
        late: BaseException = OperationTimedOut({key: "no answer within the deadline"}, host)
        return late
