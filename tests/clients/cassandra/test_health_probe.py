"""Health probe of an open host, against the real node behind a fault proxy whose latency
(1 s) outlasts both the calls' budget and the probe's timeout.

The probe (``system.local`` sent to that host only, through the driver) turns the
host's breaker half-open once the latency is gone, with no user call in between. Steps:
tests/clients/_recovery.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.core.breaker import BreakerState
from resilience.faults import toxics
from tests.clients._recovery import LONG, first_success, left_open_after, open_it, state

pytestmark = [pytest.mark.servers("cassandra"), pytest.mark.slow]

READ = "SELECT v FROM kv WHERE k = 'k1'"


@pytest.fixture(params=["sync", "async"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop | None]:
    if request.param == "sync":
        yield None
        return
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _client(make_db: Any, host: str, loop: asyncio.AbstractEventLoop | None,
            **options: Any) -> tuple[Any, Callable[..., Any], Callable[[float], None]]:
    """(the client, a blocking read, a pause that lets the loop run)."""
    from resilience.clients.cassandra import AsyncCassandra, Cassandra

    if loop is None:
        db = make_db(host, **options)
        return db, lambda **kw: db.execute(READ, **kw), time.sleep

    db = make_db(host, kind=AsyncCassandra, **options)

    def read(**kw: Any) -> Any:
        return loop.run_until_complete(db.execute(READ, **kw))

    def pause(seconds: float) -> None:
        loop.run_until_complete(asyncio.sleep(seconds))

    assert not isinstance(db, Cassandra)
    return db, read, pause


def _opened(node: Any, fault_proxy: Any, make_db: Any, loop: Any,
            **options: Any) -> tuple[Any, Any, Callable[..., Any], Callable[[float], None],
                                     Any]:
    proxy = fault_proxy(("127.0.0.1", node.port))
    host = f"{proxy.host}:{proxy.port}"
    db, read, pause = _client(make_db, host, loop, **LONG, **options)
    first_success(lambda: read(timeout=2.0), pause, 30.0)  # connected
    breaker = db.breaker(host)
    proxy.add(toxics.Latency(latency_ms=1000))
    try:
        open_it(read, breaker, pause)
    except BaseException:
        proxy.clear()
        raise
    return proxy, breaker, read, pause, db


def test_probe_ends_the_open_interval_without_a_user_call(
        node: Any, fault_proxy: Any, make_db: Any, loop: Any) -> None:
    proxy, breaker, read, pause, _ = _opened(node, fault_proxy, make_db, loop)
    try:
        assert left_open_after(breaker, pause, 0.8) is None  # the probes time out meanwhile
    finally:
        proxy.clear()
    # No user call from here on until the breaker has left OPEN.
    took = left_open_after(breaker, pause, 5.0)
    assert took is not None, "still open 5 s after the heal (the open interval is 30 s)"
    assert state(breaker) is BreakerState.HALF_OPEN
    assert first_success(read, pause, 2.0) < 1.0
    assert state(breaker) is BreakerState.CLOSED


def test_probing_off_leaves_recovery_to_user_traffic(
        node: Any, fault_proxy: Any, make_db: Any) -> None:
    proxy, breaker, _, pause, db = _opened(node, fault_proxy, make_db, None,
                                           breaker_health_probe=False)
    assert db._probing is None
    proxy.clear()
    assert left_open_after(breaker, pause, 1.5) is None
