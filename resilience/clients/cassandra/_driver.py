"""The lazy cassandra-driver session: built in the background within the connect budget.

Imported on the first call (it imports cassandra-driver at module level).

``Cluster.connect()`` takes no timeout and ``Cluster()`` resolves contact points (DNS)
in its constructor. So neither runs on a caller's thread: the first call that needs
the session starts one connect in a daemon thread and waits for it at most its own
remaining time; calls that come while it runs wait on the same connect, each for its
own time. Every step of the connect is bounded by the connect budget: names are resolved
in that thread before the Cluster is built and the connect is given up when resolution
alone used the budget; the driver's ``connect_timeout`` and
``control_connection_timeout`` are the budget. A connect that failed leaves no session:
the driver shuts a failed Cluster down itself and would refuse to connect it again
("Cluster is already shut down"), so the next call builds a new Cluster.

The Cluster is configured for failing fast: protocol version pinned (no downgrade
round trips), ``FallthroughRetryPolicy`` (the driver retries nothing, not even
connection errors on the next host), an exponential reconnection delay with a small
ceiling that never gives up, a short idle heartbeat, and the load-balancing policy
wrapped in :class:`BreakerAwarePolicy`, which leaves out of every query plan the hosts
whose breaker is open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    FallthroughRetryPolicy,
    TokenAwarePolicy,
    WrapperPolicy,
)

from resilience.clients.cassandra._errors import connect_pending
from resilience.clients.cassandra._options import CassandraOptions
from resilience.clients.cassandra._replica import FirstReplica

__all__ = ["BreakerAwarePolicy", "Connector"]

_monotonic = time.monotonic


class BreakerAwarePolicy(WrapperPolicy):  # type: ignore[misc]
    """Query plans of the child policy without the hosts ``skip(host)`` rejects.

    Filters only in ``make_query_plan``: ``distance()`` is the child's, unchanged, so a
    breaker that opens and closes never makes the driver drop and rebuild a host's pool.
    """

    def __init__(self, child: Any, skip: Callable[[Any], bool]) -> None:
        super().__init__(child)
        self._skip = skip

    @property
    def child(self) -> Any:
        """The wrapped policy (the client walks its plans itself, asking each host's
        breaker for a permit: the same filter, plus the permit)."""
        return self._child_policy

    def make_query_plan(self, working_keyspace: Any = None, query: Any = None) -> Any:
        skip = self._skip
        for host in self._child_policy.make_query_plan(working_keyspace, query):
            if not skip(host):
                yield host


def _no_replica(keyspace: str | None, statement: Any) -> None:
    return None


def _resolve(point: str, port: int, until: float) -> tuple[str, int]:
    host, sep, tail = point.rpartition(":")
    if not sep or (point.count(":") > 1 and not point.startswith("[")):
        host, tail = point, ""
    host = host.strip("[]")
    port = int(tail) if tail else port
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    # A name: resolved here, in the connect thread; the budget is checked after, since
    # getaddrinfo cannot be cut short (the callers never wait on it beyond their time).
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if _monotonic() > until:
        raise TimeoutError(f"resolving {host!r} took longer than the connect budget")
    return str(info[0][4][0]), port


def _late(remaining: float) -> Exception:
    return connect_pending(f"not connected within {remaining * 1000:.0f} ms; the connect "
                           "goes on in the background")


def _outcome(attempt: _Connect) -> Session:
    if attempt.error is not None:
        raise attempt.error
    assert attempt.session is not None
    return attempt.session


class _Connect:
    """One connect in flight: its thread, its outcome."""

    __slots__ = ("done", "error", "session", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.session: Session | None = None
        self.error: BaseException | None = None
        self.waiters: list[asyncio.Future[None]] = []  # asyncio callers, woken at the end

    def finish(self) -> None:
        self.done.set()
        for waiter in self.waiters:
            loop = waiter.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Connector:
    """The session, connected lazily in the background (see the module docstring).

    Args:
        options: the client's options.
        skip: ``skip(host)`` is True while the host's breaker is open.
        on_host: called with each host the session learns of (to add its endpoint).
    """

    def __init__(self, options: CassandraOptions, skip: Callable[[Any], bool]) -> None:
        self.options = options
        self._dc_policy = DCAwareRoundRobinPolicy(local_dc=options.local_dc or None)
        self.policy = BreakerAwarePolicy(TokenAwarePolicy(self._dc_policy), skip)
        #: ``plan(keyspace, statement)``: the wrapped policy's query plan (the client
        #: walks it itself, asking each host's breaker for a permit).
        self.plan = self.policy.child.make_query_plan
        self._lock = threading.Lock()
        self._pending: _Connect | None = None
        self._closed = False
        #: ``first(keyspace, statement)``: the host the plan would start with, or None
        #: (:mod:`._replica`); set with the session.
        self.first: Callable[[str | None, Any], Any] = _no_replica
        self.session: Session | None = None  # set once connected; read without the lock
        self.cluster: Cluster | None = None
        self.prepared: dict[str, Any] = {}  # CQL text -> PreparedStatement, per session

    def get(self, remaining: float) -> Session:
        """The connected session, waiting at most ``remaining`` seconds for it.

        Raises:
            OperationTimedOut: not connected in time (the connect goes on).
            Exception: the driver's error of the connect that failed.
        """
        session = self.session
        if session is not None:
            return session
        attempt = self._begin()
        if not attempt.done.wait(max(0.0, remaining)):
            raise _late(remaining)
        return _outcome(attempt)

    async def aget(self, remaining: float) -> Session:
        """:meth:`get` for asyncio: the loop is never blocked while the connect runs."""
        session = self.session
        if session is not None:
            return session
        attempt = self._begin()
        if not attempt.done.is_set():
            waiter = asyncio.get_running_loop().create_future()
            attempt.waiters.append(waiter)
            if attempt.done.is_set():  # ended between the check and the append
                _wake(waiter)
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    await waiter
            except TimeoutError:
                raise _late(remaining) from None
        return _outcome(attempt)

    def _begin(self) -> _Connect:
        with self._lock:
            if self._closed:
                from cassandra import DriverException

                raise DriverException("client is closed")
            attempt = self._pending
            if attempt is None:
                attempt = self._pending = _Connect()
                if self.session is not None:  # connected meanwhile
                    attempt.session = self.session
                    attempt.done.set()
                    self._pending = None
                    return attempt
                threading.Thread(target=self._connect, args=(attempt,), daemon=True,
                                 name="resilience-cassandra-connect").start()
            return attempt

    def _connect(self, attempt: _Connect) -> None:
        opts = self.options
        until = _monotonic() + opts.connect_timeout
        cluster: Cluster | None = None
        try:
            points = [_resolve(p, opts.port, until) for p in opts.contact_points]
            cluster = self._cluster(points)
            session = cluster.connect(opts.keyspace or None)
        except BaseException as exc:
            attempt.error = exc
            if cluster is not None:
                cluster.shutdown()  # the driver did it already on most failures; idempotent
            with self._lock:
                self._pending = None  # the next call starts a new connect, on a new Cluster
            attempt.finish()
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self.first = FirstReplica(cluster.metadata, self._dc_policy).find
                self.session, self.cluster = session, cluster
            self._pending = None
        if closed:
            cluster.shutdown()
            attempt.error = connect_pending("client is closed")
        else:
            attempt.session = session
        attempt.finish()

    def _cluster(self, points: list[tuple[str, int]]) -> Cluster:
        opts = self.options
        profile = ExecutionProfile(
            load_balancing_policy=self.policy,
            retry_policy=FallthroughRetryPolicy(),
            consistency_level=getattr(ConsistencyLevel, opts.consistency.upper()),
            serial_consistency_level=getattr(ConsistencyLevel, opts.serial_consistency.upper()),
            request_timeout=opts.timeout,
        )
        auth = (PlainTextAuthProvider(opts.username, opts.password) if opts.username
                else None)
        # Contact points with their own ports go in as (host, port) pairs.
        return Cluster(
            contact_points=points,
            port=opts.port,
            protocol_version=opts.protocol_version,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=auth,
            connect_timeout=opts.connect_timeout,
            control_connection_timeout=opts.connect_timeout,
            max_schema_agreement_wait=opts.connect_timeout,
            reconnection_policy=ExponentialReconnectionPolicy(
                min(0.1, opts.reconnect_max), opts.reconnect_max, max_attempts=None),
            idle_heartbeat_interval=opts.heartbeat_interval,
            idle_heartbeat_timeout=opts.heartbeat_interval,
            executor_threads=opts.executor_threads,
            prepare_on_all_hosts=False,
        )

    def adopt_prepared(self, query: str, rs: Any) -> Any:
        """The PreparedStatement of a PREPARE answer (what ``Session.prepare()`` builds),
        registered with the cluster for transparent re-preparation, cached by text."""
        from cassandra.query import PreparedStatement

        known = self.prepared.get(query)
        if known is not None:
            return known
        session, cluster = self.session, self.cluster
        assert session is not None and cluster is not None
        response = rs.one()
        statement = PreparedStatement.from_message(
            response.query_id, response.bind_metadata, response.pk_indexes, cluster.metadata,
            query, None, session._protocol_version, response.column_metadata,
            response.result_metadata_id, cluster.column_encryption_policy)
        cluster.add_prepared(response.query_id, statement)
        self.prepared[query] = statement
        return statement

    def close(self) -> None:
        """Shut the cluster down (in-flight requests fail at once); a connect still
        running shuts its own cluster down when it ends."""
        with self._lock:
            self._closed = True
            cluster, self.cluster, self.session = self.cluster, None, None
            pending = self._pending
        if pending is not None and not pending.done.is_set():
            pending.error = connect_pending("client is closed")
            pending.finish()  # wake the callers waiting on the connect
        if cluster is not None:
            cluster.shutdown()
