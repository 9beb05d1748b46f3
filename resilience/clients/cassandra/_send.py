"""Sending one request to one host: the host chosen by its breaker, its outcome recorded.

The driver would pick the coordinator itself and report only the request's outcome;
here the client walks the load-balancing policy's plan, asks each host's breaker for a
permit, and sends to exactly the host that granted one (``host=``), so the outcome
lands on that host's breaker (:class:`Sender`). The sync and async clients differ only
in how they wait for the future.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from resilience.clients.cassandra._common import Request
from resilience.clients.cassandra._errors import never_sent
from resilience.core._window import ClosedPermit

__all__ = ["Flight", "Sender"]

_monotonic = time.monotonic


Flight = tuple[Any, Any, int, Any, float, Request]
"""A request sent to one host, waiting for its answer: ``(future, host, host_index,
permit, began, request)``.

A plain tuple, read by unpacking: a named tuple costs 1.4k instructions more per
request (building it from a tuple copies the items into the subclass; calling the
class enters a Python ``__new__``; both measured with callgrind).
"""


def rest_of_plan(first: Any, plan: Any, keyspace: str | None, statement: Any) -> Iterator[Any]:
    """The policy's plan without ``first`` (walked only when ``first``, the host found
    by ``_replica.FirstReplica``, was not taken: its breaker refused, or the driver had
    no connection to it)."""
    return (host for host in plan(keyspace, statement) if host is not first)


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
        prepare = request.op == "prepare"
        breakers = self._breakers
        host_ids = self._host_ids
        now = _monotonic()
        errors: dict[Any, BaseException] | None = None  # hosts that refused it unsent
        skipped = 0
        keyspace = session.keyspace
        first = None
        if prepare:
            plan: Any = connector.plan(keyspace, None)
        elif request.failed_host is not None:  # a retry: the host that just failed goes last
            plan = request.replan(connector.plan(keyspace, request.statement))
        else:
            # The usual first host without the policy's generators (._replica); the whole
            # plan only when that host is not taken, or cannot be told so cheaply.
            first = connector.first(keyspace, request.statement)
            plan = ((first,) if first is not None
                    else connector.plan(keyspace, request.statement))
        while True:
            for host in plan:
                # self._index_of(host) and breaker.acquire(now) without their frames (the
                # breaker's contract, as the pipeline inlines it): the usual case.
                known = host_ids.get(id(host))
                index = known[1] if known is not None and known[0] is host else self._index_of(host)
                breaker = breakers[index]
                permit = breaker._fast_permit or breaker._acquire_slow(now)
                if permit is None:
                    skipped += 1
                    continue
                left = deadline - now
                if left <= 0.0:
                    breaker.release(permit)
                    break
                try:
                    if prepare:
                        future = _send_prepare(session, request, host, left)
                    else:
                        future = session.execute_async(request.statement, request.params,
                                                       timeout=left,
                                                       paging_state=request.paging_state,
                                                       host=host)
                except Exception as exc:  # raised on this thread: not sent (or a caller error)
                    self._record(breaker, permit, now, exc)
                    raise self._host_failure(exc, request, index) from exc
                failed = future._final_exception
                if failed is not None and never_sent(failed):
                    # The driver had no connection to it: nothing left; try the next host.
                    end = _monotonic()
                    breaker.on_failure(permit, end, end - now)
                    if errors is None:
                        errors = {}
                    errors[host] = failed
                    now = end
                    continue
                return future, host, index, permit, now, request
            else:
                if first is not None:  # the first host was not taken: the rest of the plan
                    plan = rest_of_plan(first, connector.plan, keyspace, request.statement)
                    first = None
                    continue
            break
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
        """Record the host's outcome; the driver's ResultSet, or raise the mapped error.

        Called once the future has ended (or with ``exc`` when it did not in time).
        """
        future, host, index, permit, began, request = flight
        if exc is None:
            exc = future._final_exception
        if exc is None and type(permit) is ClosedPermit:
            end = _monotonic()
            if end - began < permit.slow_after:
                permit.window.add_ok(end)  # on_success's fast path, as the pipeline inlines it
            else:
                self._breakers[index].on_success(permit, end, end - began)
        else:
            self._record(self._breakers[index], permit, began, exc)
        if exc is None:
            # The ResultSet built as future.result() builds it, without its second
            # Event.wait (three more Python frames; the event is already set).
            return self._result_set(future, future._final_result)
        request.failed_host = host
        raise self._host_failure(exc, request, index) from exc

    def _late(self: Any, flight: Flight) -> BaseException:
        """The error for a future the driver did not end within the deadline."""
        from cassandra import OperationTimedOut

        future = flight[0]
        host = future._current_host
        future.clear_callbacks()
        key = str(getattr(host, "endpoint", host))
        late: BaseException = OperationTimedOut({key: "no answer within the deadline"}, host)
        return late
