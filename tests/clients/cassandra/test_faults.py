"""Faults on a real node: every call ends within its 100 ms budget, the host's breaker
opens and then rejects without I/O, and the client recovers once the fault is gone.

The driver gaps, each shown here: a first call while the connect hangs (raw
``Cluster.connect()`` has no timeout), a page after the first that never comes (the
raw driver arms no timer for it), ``prepare()`` (fixed 10 s per host in the driver),
and a hung host (the raw driver marks it down only after a failed heartbeat).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilience.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ResilienceError,
)
from resilience.faults import toxics
from tests.clients.cassandra.conftest import BUDGET, MARGIN, assert_within_budget, connected, timed

pytestmark = [pytest.mark.servers("cassandra"), pytest.mark.slow]

READ = "SELECT v FROM kv WHERE k = 'k1'"

TOXICS: dict[str, Callable[[], toxics.Toxic]] = {
    "latency-above": lambda: toxics.Latency(latency_ms=300),
    "blackhole": lambda: toxics.Blackhole(),
    "slow-drip": lambda: toxics.Slicer(average_size=1, delay_us=15_000),
    "reset": lambda: toxics.Reset(after_bytes=1),
    "garbage": lambda: toxics.Garbage(ratio=1.0),
}


def recovers(db: Any, within: float = 10.0) -> None:
    """Probe until a read succeeds again (bounded)."""
    give_up = time.monotonic() + within
    while True:
        time.sleep(0.25)
        try:
            db.execute(READ, timeout=1.0)
            return
        except ResilienceError:
            if time.monotonic() > give_up:
                raise


@pytest.mark.parametrize("name", list(TOXICS))
def test_fault_through_proxy_ends_in_budget_opens_breaker_and_recovers(
        name: str, node: Any, fault_proxy: Any, make_db: Any) -> None:
    """Under each proxy fault every read ends by its deadline, the host's breaker opens
    and then rejects in well under a millisecond, and reads succeed after the fault."""
    proxy = fault_proxy(("127.0.0.1", node.port))
    host = f"{proxy.host}:{proxy.port}"
    db = make_db(host)
    connected(db)
    proxy.add(TOXICS[name]())
    outcomes = [timed(lambda: db.execute(READ)) for _ in range(8)]
    assert_within_budget(outcomes, what=name)
    # The host's breaker, or, once the driver itself marked the host down (a reset or
    # garbage closes its connection), the cluster's: either way calls stop going out.
    states = {db.breaker(e).state(time.monotonic()).value for e in (host, "cluster")}
    assert states & {"open", "half_open"}, states
    wall, err = timed(lambda: db.execute(READ))
    if isinstance(err, CircuitOpenError):
        assert wall < 0.005
    proxy.clear()
    recovers(db)


def test_frozen_node_reads_end_in_budget(node: Any, make_db: Any, contact: str) -> None:
    """A SIGSTOPped node: reads time out at the budget (the raw driver waits 10 s and
    keeps the host up for up to a minute), then the breaker rejects at once."""
    db = make_db(contact)
    connected(db)
    with node.frozen_for():
        outcomes = [timed(lambda: db.execute(READ)) for _ in range(6)]
        assert_within_budget(outcomes, what="frozen")
        assert all(isinstance(e, (BackendTimeoutError, CircuitOpenError))
                   for _, e in outcomes)
        wall, err = timed(lambda: db.execute(READ))
        assert isinstance(err, CircuitOpenError) and wall < 0.005
        # prepare() is bounded too (the driver's waits a fixed 10 s on every host).
        wall, err = timed(lambda: db.prepare("SELECT k FROM kv WHERE k = ?", timeout=0.1))
        assert err is not None and wall < BUDGET + MARGIN
    recovers(db)


def test_page_after_the_first_is_bounded(node: Any, fault_proxy: Any, make_db: Any) -> None:
    """A page that never comes fails at the call's budget (the raw driver blocks forever:
    it arms no timer for pages after the first)."""
    proxy = fault_proxy(("127.0.0.1", node.port))
    db = make_db(f"{proxy.host}:{proxy.port}")
    connected(db)
    first = db.execute("SELECT k FROM kv", fetch_size=5, timeout=0.5)
    assert first.has_more_pages
    proxy.add(toxics.Blackhole())
    wall, err = timed(lambda: first.next_page())  # each page: the call's 0.5 s again
    assert isinstance(err, BackendTimeoutError) and 0.45 < wall < 0.5 + MARGIN


def test_first_call_while_connect_hangs_fails_in_its_own_budget(
        node: Any, fault_proxy: Any, make_db: Any) -> None:
    """Connects that hang: the first calls fail within their budget while the connect
    goes on in the background; once the path heals, a call connects and answers."""
    proxy = fault_proxy(("127.0.0.1", node.port))
    proxy.add(toxics.Blackhole())
    db = make_db(f"{proxy.host}:{proxy.port}", connect_timeout=0.5)
    outcomes = [timed(lambda: db.execute(READ)) for _ in range(3)]
    assert_within_budget(outcomes, what="connect hangs")
    proxy.clear()
    recovers(db)


def test_failed_connect_is_retried_on_a_new_cluster(node: Any, fault_proxy: Any,
                                                    make_db: Any) -> None:
    """A refused first connect fails fast; the next call connects on a new Cluster (the
    driver shuts a failed one down and would refuse it: 'Cluster is already shut down')."""
    proxy = fault_proxy(("127.0.0.1", node.port))
    proxy.add(toxics.Refuse())
    db = make_db(f"{proxy.host}:{proxy.port}", timeout=1.0)
    wall, err = timed(lambda: db.execute(READ))
    assert isinstance(err, BackendUnavailableError) and wall < 1.0 + MARGIN
    proxy.clear()
    db.breaker("cluster").reset()
    recovers(db)


def test_close_wakes_a_blocked_call(node: Any, fault_proxy: Any, make_db: Any) -> None:
    """close() from another thread ends a call waiting on a silent host at once."""
    proxy = fault_proxy(("127.0.0.1", node.port))
    db = make_db(f"{proxy.host}:{proxy.port}")
    connected(db)
    proxy.add(toxics.Blackhole())
    threading.Timer(0.3, db.close).start()
    wall, err = timed(lambda: db.execute(READ, timeout=5.0))
    assert isinstance(err, BackendUnavailableError) and wall < 2.0


def test_no_leaked_threads_after_many_faulted_calls(node: Any, fault_proxy: Any,
                                                    make_db: Any) -> None:
    """Hundreds of failed connects and calls leave no thread behind once the client is
    closed."""
    before = threading.active_count()
    proxy = fault_proxy(("127.0.0.1", node.port))
    proxy.add(toxics.Refuse())
    db = make_db(f"{proxy.host}:{proxy.port}", breaker_enabled=False, retry_attempts=1)
    for _ in range(40):
        timed(lambda: db.execute(READ, timeout=0.2))
    db.close()
    give_up = time.monotonic() + 10
    while threading.active_count() > before + 1 and time.monotonic() < give_up:
        time.sleep(0.1)
    assert threading.active_count() <= before + 1, threading.enumerate()
