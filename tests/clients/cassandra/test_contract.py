"""The client contract on Cassandra: what is retried, what the driver is told, rejections
without I/O, the error map with causes, fork, asyncio under a fault."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from resilience.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ResilienceError,
)
from resilience.faults import toxics
from resilience.testing._server_fixtures import require_driver
from tests.clients.cassandra.conftest import (
    BUDGET,
    MARGIN,
    assert_within_budget,
    connected,
)

READ = "SELECT v FROM kv WHERE k = 'k1'"


def test_retry_safety_follows_the_outcome_the_server_reports() -> None:
    """Judged from the driver's own exceptions: not-applied failures may be retried for
    any statement, ambiguous ones only when idempotent, COUNTER and CAS never."""
    require_driver("cassandra", "cassandra")  # pure logic on the driver's classes
    import cassandra
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException, ConnectionShutdown
    from cassandra.pool import NoConnectionsAvailable

    from resilience.clients.cassandra._errors import retry_safe

    def wt(kind: str) -> Exception:
        err: Exception = cassandra.WriteTimeout(
            "t", write_type=getattr(cassandra.WriteType, kind))
        return err

    down = NoHostAvailable("x", {"h": ConnectionException("Host has been marked down")})
    sent = NoHostAvailable("x", {"h": ConnectionShutdown("gone")})
    cases = [
        (cassandra.Unavailable("u"), False, (True, False)),
        (NoHostAvailable("x", {"h": NoConnectionsAvailable()}), False, (True, False)),
        (down, False, (True, False)),
        (sent, False, (False, True)),
        (sent, True, (True, True)),
        (wt("BATCH_LOG"), False, (True, False)),
        (wt("SIMPLE"), False, (False, True)),
        (wt("SIMPLE"), True, (True, True)),
        (wt("BATCH"), True, (True, True)),
        (wt("COUNTER"), True, (False, True)),
        (wt("CAS"), True, (False, True)),
        (cassandra.OperationTimedOut("t"), False, (False, True)),
        (cassandra.OperationTimedOut("t"), True, (True, True)),
        (cassandra.ReadTimeout("r"), True, (True, False)),
    ]
    for exc, idempotent, expected in cases:
        assert retry_safe(exc, idempotent) == expected, (exc, idempotent)


@pytest.mark.servers("cassandra")
def test_driver_is_told_to_fail_fast(make_db: Any, contact: str) -> None:
    """The Cluster the client builds: protocol pinned, the driver retries nothing, the
    reconnection delay has a small ceiling and never gives up, short heartbeats, and
    the load-balancing policy skips hosts whose breaker is open."""
    from cassandra.policies import FallthroughRetryPolicy

    db = make_db(contact, timeout=5.0)
    connected(db)
    cluster = db._driver.get().cluster
    assert cluster.protocol_version == 5
    profile = cluster.profile_manager.default
    assert isinstance(profile.retry_policy, FallthroughRetryPolicy)
    policy = cluster.reconnection_policy
    assert policy.max_attempts is None and policy.max_delay <= 2.0
    assert cluster.idle_heartbeat_interval <= 5 and cluster.idle_heartbeat_timeout <= 5
    host = cluster.metadata.all_hosts()[0]
    assert list(profile.load_balancing_policy.make_query_plan()) == [host]
    db.breaker(contact).force_open()
    assert list(profile.load_balancing_policy.make_query_plan()) == []


@pytest.mark.servers("cassandra")
def test_rejections_do_no_io(node: Any, fault_proxy: Any, make_db: Any) -> None:
    """An open host breaker and an open cluster breaker both reject without a byte sent."""
    proxy = fault_proxy(("127.0.0.1", node.port))
    host = f"{proxy.host}:{proxy.port}"
    db = make_db(host)
    connected(db)
    before = proxy.counters()
    db.breaker(host).force_open()
    for _ in range(50):
        with pytest.raises(CircuitOpenError):
            db.execute(READ)
    db.breaker(host).reset()
    db.breaker("cluster").force_open()
    for _ in range(50):
        with pytest.raises(CircuitOpenError):
            db.execute(READ)
    after = proxy.counters()
    assert (after.accepted, after.upstream_bytes) == (before.accepted, before.upstream_bytes)


@pytest.mark.servers("cassandra")
def test_errors_carry_the_driver_exception_and_the_ambiguity(
        node: Any, fault_proxy: Any, make_db: Any) -> None:
    """A timed-out write is a BackendTimeoutError marked ambiguous, never retried, with
    the driver's OperationTimedOut as its cause; a refused connect is unavailable."""
    import cassandra

    proxy = fault_proxy(("127.0.0.1", node.port))
    host = f"{proxy.host}:{proxy.port}"
    retries: list[Any] = []
    db = make_db(host)
    db.events.add_listener(lambda e: retries.append(e) if e.kind == "retry" else None)
    connected(db)
    proxy.add(toxics.Latency(latency_ms=300))
    with pytest.raises(BackendTimeoutError) as info:
        db.execute("UPDATE kv SET v = 5 WHERE k = 'w'")
    err = info.value
    assert isinstance(err.__cause__, cassandra.OperationTimedOut)
    assert err.ambiguous and not err.retryable and err.endpoint == host  # type: ignore[attr-defined]
    assert retries == []
    proxy.clear()
    proxy.add(toxics.Refuse())
    fresh = make_db(host, timeout=1.0)
    with pytest.raises(BackendUnavailableError) as refused:
        fresh.execute(READ)
    assert refused.value.__cause__ is not None


@pytest.mark.servers("cassandra")
def test_fork_child_builds_its_own_session(make_db: Any, contact: str) -> None:
    """After fork the child connects afresh and answers; the parent's session still works."""
    db = make_db(contact, timeout=5.0)
    connected(db)
    pid = os.fork()
    if pid == 0:  # the child: exit code says whether it could read
        code = 1
        try:
            code = 0 if db.execute(READ, timeout=10.0).one().v == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db.execute(READ).one().v == 1


@pytest.mark.servers("cassandra")
def test_async_frozen_node_ends_in_budget_without_blocking_the_loop(
        node: Any, make_db: Any, contact: str) -> None:
    """AsyncCassandra on a frozen node: reads end at the budget, the breaker opens, and
    the loop keeps running meanwhile (a ticker advances)."""
    from resilience.clients.cassandra import AsyncCassandra

    async def main() -> None:
        db = make_db(contact, kind=AsyncCassandra)
        for _ in range(100):
            try:
                await db.execute(READ, timeout=2.0)
                break
            except Exception:
                await asyncio.sleep(0.1)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        outcomes: list[tuple[float, ResilienceError | None]] = []
        with node.frozen_for():
            for _ in range(6):
                start = time.monotonic()
                try:
                    await db.execute(READ)
                    outcomes.append((time.monotonic() - start, None))
                except (BackendTimeoutError, CircuitOpenError) as exc:
                    outcomes.append((time.monotonic() - start, exc))
        task.cancel()
        assert_within_budget(outcomes, what="async frozen")
        assert ticks > 10
        wall, err = outcomes[-1]
        assert isinstance(err, CircuitOpenError) and wall < BUDGET + MARGIN

    asyncio.run(main())


@pytest.mark.servers("cassandra")
@pytest.mark.parametrize("toxic", ["blackhole", "garbage"])
def test_async_proxy_faults_end_in_budget_and_close_wakes_a_call(
        toxic: str, node: Any, fault_proxy: Any, make_db: Any) -> None:
    """AsyncCassandra under a silent or garbling path: reads end by the budget and the
    breaker opens; a call waiting on a silent host ends when the client is closed."""
    from resilience.clients.cassandra import AsyncCassandra

    proxy = fault_proxy(("127.0.0.1", node.port))
    host = f"{proxy.host}:{proxy.port}"

    async def main() -> None:
        db = make_db(host, kind=AsyncCassandra)
        for _ in range(100):
            try:
                await db.execute(READ, timeout=2.0)
                break
            except ResilienceError:
                await asyncio.sleep(0.1)
        proxy.add(toxics.Blackhole() if toxic == "blackhole" else toxics.Garbage(ratio=1.0))
        outcomes: list[tuple[float, ResilienceError | None]] = []
        for _ in range(8):
            start = time.monotonic()
            try:
                await db.execute(READ)
                outcomes.append((time.monotonic() - start, None))
            except ResilienceError as exc:
                outcomes.append((time.monotonic() - start, exc))
        assert_within_budget(outcomes, what=f"async {toxic}")
        assert isinstance(outcomes[-1][1], CircuitOpenError)
        if toxic == "blackhole":
            other = make_db(host, kind=AsyncCassandra)
            proxy.clear()
            await other.execute(READ, timeout=5.0)
            proxy.add(toxics.Blackhole())
            call = asyncio.ensure_future(other.execute(READ, timeout=5.0))
            await asyncio.sleep(0.3)
            start = time.monotonic()
            await other.aclose()
            with pytest.raises(BackendUnavailableError):
                await call
            assert time.monotonic() - start < 2.0

    asyncio.run(main())


def test_a_retry_tries_the_host_that_failed_last() -> None:
    """The retry's plan keeps the policy's order but moves the host that just failed to
    the end (it is still tried when it is the only one); a hedge's plan leaves the first
    attempt's host out altogether."""
    from resilience.clients.cassandra._common import Request
    from resilience.clients.cassandra._hedged import HedgedRequest, Pair

    def plan(request: Request, hosts: list[str]) -> list[str]:
        request.failed_host = "a"
        return request.replan(iter(hosts))

    retry = Request("SELECT 1", None, "select", True)
    assert plan(retry, ["a", "b", "c"]) == ["b", "c", "a"]
    assert plan(retry, ["a"]) == ["a"]
    assert plan(retry, ["b", "c"]) == ["b", "c"]
    hedge = HedgedRequest(retry, None, Pair(), hedge=True)
    assert plan(hedge, ["a", "b", "c"]) == ["b", "c"]
    assert plan(hedge, ["a"]) == []
