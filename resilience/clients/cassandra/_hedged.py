"""Hedged SELECT on Cassandra (opt-in, docs/hedging.md#cassandra).

With ``hedge_enabled``, the client swaps in the hedged ``execute`` (and, sync, the
hedged attempt; async, the hedged send) at construction; with it off none of this runs.
A statement is hedged when it is a read that may be sent twice: a SELECT (or a
prepared SELECT) whose idempotency is not turned off, not at a SERIAL consistency
(a Paxos read), and only its first page (``paging_state`` None; the following pages
are one unhedged call each). Writes, LWT and batches are never hedged.

The race is :mod:`resilience.clients._hedge`'s: the first attempt goes to the host the
usual walk of the query plan picks (:mod:`._send`); after the hedge delay, if the budget
allows, the hedge is a second request (operation ``select/hedge``, attempts of kind
``hedge``) to another host of the plan whose breaker admits it, never the first
attempt's (:class:`Pair` tells the hedge which host that is). The first answer wins.

The loser: cassandra-driver 3.x has no way to withdraw a request from the wire, so
the loser's ResponseFuture is abandoned: its callbacks are cleared, its host's breaker
permit is released (a cancellation is not an outcome: nothing is recorded), and the
driver's own timer (``timeout=`` the call's remaining time) still ends the request and
frees its stream id by the call's deadline at the latest, so nothing outlives the call
by more than that. Sync: the loser waits on an event the future's callbacks and its
`Token` both set, so the winner's thread wakes it at once. Async: its task is
cancelled, which the async wait already treats as no outcome.

A hedge that finds no other host (one node, the first attempt's host unknown yet
because it is still connecting, every other breaker open) is dropped as cancelled: it
records nothing, and the first attempt goes on.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from resilience.clients._hedge import (
    HEDGE_SUFFIX,
    HedgeCancelled,
    Token,
    acall_hedged,
    call_hedged,
    deadline_at,
)
from resilience.clients.cassandra._common import CLUSTER, Request
from resilience.clients.cassandra._send import Flight, Sender

__all__ = ["AsyncHedging", "HedgedRequest", "Pair", "SyncHedging"]

_monotonic = time.monotonic
_SERIAL = (8, 9)  # ConsistencyLevel.SERIAL, LOCAL_SERIAL: Paxos reads, never hedged


class Pair:
    """What the two attempts of one hedged read share: the first attempt's host."""

    __slots__ = ("first",)

    def __init__(self) -> None:
        self.first: Any = None


class HedgedRequest(Request):
    """One attempt of a hedged read: the request, its cancel token, its `Pair`, and
    whether it is the hedge (whose plan leaves the first attempt's host out)."""

    __slots__ = ("hedge", "pair", "token")

    def __init__(self, request: Request, token: Token | None, pair: Pair, *,
                 hedge: bool) -> None:
        super().__init__(request.statement, request.params, request.op, request.idempotent,
                         request.paging_state)
        self.token = token
        self.pair = pair
        self.hedge = hedge

    def replan(self, plan: Any) -> list[Any]:
        if not self.hedge:
            return super().replan(plan)
        host = self.failed_host  # the first attempt's: the hedge goes elsewhere or nowhere
        return [h for h in plan if h != host]


def hedgeable(request: Request) -> bool:
    """Whether ``request`` may be hedged: an idempotent SELECT's first page, not serial."""
    return (request.op == "select" and request.idempotent and request.paging_state is None
            and getattr(request.statement, "consistency_level", None) not in _SERIAL)


class _Hedging(Sender):
    """What the sync and async hedged reads share: sending each attempt to its host."""

    def _start_hedged(self: Any, connector: Any, session: Any, request: Request,
                      deadline: float) -> Flight:
        """:meth:`Sender._start`, and for an attempt of a hedged read: the first one
        notes its host; the hedge goes to another host or is dropped (cancelled)."""
        if type(request) is not HedgedRequest:
            return Sender._start(self, connector, session, request, deadline)
        token = request.token
        if token is not None and token.cancelled:
            raise HedgeCancelled
        pair = request.pair
        if not request.hedge:
            flight = Sender._start(self, connector, session, request, deadline)
            _, pair.first, _, _, _, _ = flight  # (future, host, ...): the host
            return flight
        first = pair.first
        if first is None or not self._other_host(connector, session, request, first):
            raise HedgeCancelled  # nowhere else to send it: not an outcome of any host
        request.failed_host = first
        return Sender._start(self, connector, session, request, deadline)

    def _other_host(self: Any, connector: Any, session: Any, request: Request,
                    first: Any) -> bool:
        plan = connector.plan(session.keyspace, request.statement)
        return any(h != first and not self._skip(h) for h in plan)

    def _abandon(self: Any, flight: Flight) -> Any:
        """The loser: its answer unwanted, nothing recorded on its host's breaker (the
        driver's timer still ends the request on the wire by the deadline)."""
        future, _, index, permit, _, _ = flight
        future.clear_callbacks()
        self._breakers[index].release(permit)
        raise HedgeCancelled


class SyncHedging(_Hedging):
    """The sync client's hedged ``execute`` and attempt."""

    def _enable_hedging(self) -> None:
        self.execute = self._hedged_execute
        self._attempt = self._hedged_attempt

    def _hedged_execute(self: Any, query: Any, params: Any = None, *,
                        timeout: float | None = None, idempotent: bool | None = None,
                        consistency: str | None = None, paging_state: bytes | None = None,
                        fetch_size: int | None = None) -> Any:
        request = self._request(query, params, idempotent, consistency, paging_state,
                                fetch_size)
        if not hedgeable(request):
            return self._result(self._call(request.op, 0, request, timeout), timeout)
        at = deadline_at(self._clock.monotonic(),
                         self.options.timeout if timeout is None else timeout)
        pair = Pair()
        answer = call_hedged(
            self._hedge,
            lambda t: self._call("select", 0, HedgedRequest(request, t, pair, hedge=False),
                                 timeout),
            lambda t: self._call("select" + HEDGE_SUFFIX, 0,
                                 HedgedRequest(request, t, pair, hedge=True)),
            at, self.events, self.service, "select", CLUSTER)
        return self._result(answer, timeout)

    def _hedged_attempt(self: Any, connector: Any, index: int, fn: Any, remaining: float,
                        op: str) -> Any:
        if type(fn) is not HedgedRequest:
            return type(self)._attempt(self, connector, index, fn, remaining, op)
        began = _monotonic()
        deadline = began + remaining
        permit = self._cluster_permit(op, began)
        try:
            session = connector.get(remaining)
            flight = self._start_hedged(connector, session, fn, deadline)
            result = flight, self._wait_hedged(flight, deadline, fn.token)
        except BaseException as exc:
            self._cluster_outcome(permit, began, exc)
            raise
        self._cluster_outcome(permit, began, None)
        return result

    def _wait_hedged(self: Any, flight: Flight, deadline: float, token: Token) -> Any:
        """The flight's ResultSet; woken early by the other attempt's win (then the
        answer is abandoned and HedgeCancelled raised)."""
        future = flight[0]
        wake = threading.Event()

        def done(*_: Any) -> None:  # the driver's reactor thread, or inline if done
            wake.set()

        if token.bind(wake.set):
            return self._abandon(flight)
        future.add_callbacks(done, done)
        # The driver's timer ends the future at the deadline; bounded anyway.
        wake.wait(max(0.0, deadline - _monotonic()))
        if token.bind(None):
            return self._abandon(flight)
        if future._event.is_set():
            return self._finish(flight)
        return self._finish(flight, self._late(flight))


class AsyncHedging(_Hedging):
    """The async client's hedged ``execute`` (the loser's task is cancelled)."""

    def _enable_hedging(self) -> None:
        self.execute = self._hedged_execute
        self._start = self._start_hedged  # type: ignore[method-assign]

    async def _hedged_execute(self: Any, query: Any, params: Any = None, *,
                              timeout: float | None = None, idempotent: bool | None = None,
                              consistency: str | None = None,
                              paging_state: bytes | None = None,
                              fetch_size: int | None = None) -> Any:
        request = self._request(query, params, idempotent, consistency, paging_state,
                                fetch_size)
        if not hedgeable(request):
            return self._result(await self._acall(request.op, 0, request, timeout), timeout)
        at = deadline_at(self._clock.monotonic(),
                         self.options.timeout if timeout is None else timeout)
        pair = Pair()
        answer = await acall_hedged(
            self._hedge,
            lambda t: self._acall("select", 0, HedgedRequest(request, t, pair, hedge=False),
                                  timeout),
            lambda t: self._acall("select" + HEDGE_SUFFIX, 0,
                                  HedgedRequest(request, t, pair, hedge=True)),
            at, self.events, self.service, "select", CLUSTER)
        return self._result(answer, timeout)
