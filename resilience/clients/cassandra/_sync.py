"""The Cassandra wrapper: cassandra-driver behind deadlines, a breaker per host, retries.

::

    db = Cassandra(["10.0.0.1", "10.0.0.2"], keyspace="shop", timeout=0.1)  # opens nothing
    row = db.execute("SELECT * FROM users WHERE id = %s", (7,)).one()
    get_user = db.prepare("SELECT * FROM users WHERE id = ?")           # cached per text
    db.execute(get_user, (7,))
    db.execute("INSERT INTO users (id, name) VALUES (%s, %s)", (7, "a"), idempotent=True)
    db.execute("UPDATE t SET v = 1 WHERE k = 1 IF v = 0").was_applied   # a result

The first call connects (in the background, within the connect budget; the call waits
only its own time). Every request is sent to one host chosen by the client, with
``timeout=`` the remaining deadline, and its outcome goes to that host's breaker
(:mod:`._common`); pages are fetched one call each (:mod:`._result`); ``prepare()`` is
bounded and asks one host. Errors: :mod:`._errors`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from resilience.clients._base import _CallerError
from resilience.clients.cassandra._common import CassandraBase, Request
from resilience.clients.cassandra._hedged import SyncHedging
from resilience.clients.cassandra._probe import outcome, send_probe
from resilience.clients.cassandra._result import Result
from resilience.clients.cassandra._send import Flight
from resilience.core._window import ClosedPermit
from resilience.core.deadline import deadline as _ambient
from resilience.errors import ResilienceError

__all__ = ["Cassandra"]

_monotonic = time.monotonic


class Cassandra(SyncHedging, CassandraBase[Any]):
    """Cassandra through cassandra-driver, every call bounded (sync, thread-safe).

    Args:
        contact_points: first hosts, ``host`` or ``host:port`` (a list or a comma
            separated string); RESILIENCE_CASSANDRA_CONTACT_POINTS when None.
        name: a named instance (RESILIENCE_CASSANDRA_<NAME>_* variables apply).
        environ: the environment to read instead of ``os.environ``.
        events, breakers, clock: see :class:`~resilience.clients._base.ClientBase`.
        **options: any option of :class:`CassandraOptions` (``keyspace``, ``timeout``,
            ``consistency``, ``local_dc``, ``username``, ``password``, ...).

    Raises:
        ConfigError: a bad option, named.
        MissingDriverError: cassandra-driver is not installed.
    """

    # ---- the one attempt -----------------------------------------------------------------

    def _attempt(self, connector: Any, index: int, fn: Any, remaining: float, op: str) -> Any:
        began = _monotonic()
        deadline = began + remaining
        # The cluster breaker's permit: CLOSED's standing one without a frame (the
        # breaker's contract, as the pipeline inlines it), else the full check.
        permit = self._cluster._fast_permit or self._cluster_permit(op, began)
        try:
            session = connector.session
            if session is None:
                session = connector.get(remaining)
            if isinstance(fn, list):
                result: Any = self._send_many(connector, session, fn, deadline)
            else:
                flight = self._start(connector, session, fn, deadline)
                future, _, host_index, host_permit, sent, _ = flight
                # The driver's timer ends the future at the deadline; this wait is
                # bounded anyway, by what was left when the host was chosen (_start sends
                # only with time left; no clock read here).
                if not future._event.wait(deadline - sent):
                    self._finish(flight, self._late(flight))  # raises
                if future._final_exception is not None:
                    self._finish(flight)  # raises
                # _finish's success, here: one clock read for the host's breaker and the
                # cluster's, and one frame less.
                end = _monotonic()
                if type(host_permit) is ClosedPermit and end - sent < host_permit.slow_after:
                    host_permit.window.add_ok(end)  # on_success's fast path, as the pipeline's
                else:
                    self._breakers[host_index].on_success(host_permit, end, end - sent)
                result = flight, self._result_set(future, future._final_result)
                if type(permit) is ClosedPermit and end - began < permit.slow_after:
                    permit.window.add_ok(end)
                    return result
        except BaseException as exc:
            self._cluster_outcome(permit, began, exc)
            raise
        self._cluster_outcome(permit, began, None)
        return result

    def _health_probe(self, index: int, timeout: float) -> None:
        # system.local on that host only, through the driver (why: _probe's docstring).
        future = send_probe(self, index, timeout)
        if not future._event.wait(timeout):  # the driver's timer ends it; bounded anyway
            future.clear_callbacks()
            raise TimeoutError(f"health probe: no answer within {timeout:.3f} s")
        outcome(future)

    def _send_many(self, connector: Any, session: Any, requests: list[Request],
                   deadline: float) -> list[Any]:
        concurrency = max(1, getattr(requests, "concurrency", 32))
        out: list[Any] = [None] * len(requests)
        waiting: deque[tuple[int, Flight]] = deque()
        todo = deque(enumerate(requests))
        while todo or waiting:
            while todo and len(waiting) < concurrency:
                i, request = todo.popleft()
                try:
                    waiting.append((i, self._start(connector, session, request, deadline)))
                except Exception as exc:
                    out[i] = exc
            if not waiting:
                continue
            i, flight = waiting.popleft()
            try:
                if flight[0]._event.wait(max(0.0, deadline - _monotonic())):
                    out[i] = (flight, self._finish(flight))
                else:
                    out[i] = self._finish(flight, self._late(flight))
            except Exception as exc:
                out[i] = exc
        out = [e.exc if isinstance(e, _CallerError) else e for e in out]
        if out and all(isinstance(r, BaseException) for r in out):
            raise out[0]  # nothing succeeded: the call failed (the cluster breaker sees it)
        return out

    def _result(self, answer: tuple[Flight, Any], timeout: float | None) -> Result:
        return Result.of(self, answer, timeout)  # type: ignore[no-any-return]

    # ---- public API --------------------------------------------------------------------

    def execute(self, query: Any, params: Any = None, *, timeout: float | None = None,
                idempotent: bool | None = None, consistency: str | None = None,
                paging_state: bytes | None = None, fetch_size: int | None = None) -> Result:
        """Run one statement; its first page of rows (iterate it for every page).

        Args:
            query: CQL text (``%s`` placeholders), a statement, or a prepared statement.
            params: bind values (a sequence, or a dict for named placeholders).
            timeout: this call's budget in seconds (default: the ``timeout`` option).
            idempotent: whether repeating the statement is harmless; by default True for
                SELECT and for statements whose ``is_idempotent`` is set.
            consistency: a consistency level name (``"local_quorum"``) for this call.
            paging_state: continue a paged read where a previous page ended.
            fetch_size: rows per page.

        Raises:
            BackendTimeoutError: no answer in time (``.ambiguous`` when a write may have
                been applied).
            BackendUnavailableError: no host could take it; CircuitOpenError: every
                host's breaker is open, or the cluster's. Caller mistakes (bad CQL, a
                missing table, no permission) raise the driver's exception unchanged.
        """
        # Any: the base hands ``fn`` to _attempt untouched; here it is the Request.
        request: Any = self._request(query, params, idempotent, consistency, paging_state,
                                     fetch_size)
        return Result.of(self, self._call(request.op, 0, request, timeout), timeout)  # type: ignore[no-any-return]

    def prepare(self, query: str, *, timeout: float | None = None) -> Any:
        """A prepared statement for ``query``, prepared once per text on one host within
        the budget (the driver's own ``prepare()`` waits a fixed 10 s on every host)."""
        connector = self._driver.peek()
        if connector is not None and query in connector.prepared:
            return connector.prepared[query]
        _, rs = self._call("prepare", 0, _fn(Request(query, None, "prepare", True)), timeout)
        statement = self._driver.get().adopt_prepared(query, rs)
        return statement

    def batch(self, statements: Iterable[Any], *, kind: str = "logged",
              timeout: float | None = None, idempotent: bool | None = None,
              consistency: str | None = None) -> Result:
        """Run ``(query, params)`` pairs (or plain CQL texts) as one batch.

        ``kind``: ``"logged"`` (applied entirely, eventually), ``"unlogged"`` or
        ``"counter"`` (never retried). Retried only if ``idempotent=True`` or when the
        server says nothing was applied.
        """
        request = self._batch(statements, kind, consistency, idempotent)
        return self._result(self._call("batch", 0, _fn(request), timeout), timeout)

    def execute_concurrent(self, query: Any, params_seq: Sequence[Any], *,
                           timeout: float | None = None, concurrency: int = 32,
                           idempotent: bool | None = None,
                           consistency: str | None = None) -> list[Result | ResilienceError]:
        """Run ``query`` once per item of ``params_seq``, up to ``concurrency`` requests
        in flight, all within one budget: a list in the same order holding each
        item's Result or its error (raised only when every item failed)."""
        requests = _Batch(self._request(query, p, idempotent, consistency) for p in params_seq)
        requests.concurrency = concurrency
        if not requests:
            return []
        with _ambient(self.options.timeout if timeout is None else timeout):
            answers: list[Any] = self._call("concurrent", 0, _fn(requests), timeout)
        return [a if isinstance(a, ResilienceError) else self._result(a, timeout)
                for a in answers]

    def _page(self, request: Request, timeout: float | None) -> Result:
        return self._result(self._call("page", 0, _fn(request), timeout), timeout)


def _fn(request: Any) -> Any:
    # The base passes ``fn`` through to _attempt untouched: here it is the Request
    # (or the list of them), not a callable.
    return request


class _Batch(list[Request]):
    concurrency = 32
