"""Health probe of the ensemble's breaker, against a real ZooKeeper frozen with SIGSTOP.

A short freeze (well under 2/3 of the session timeout) fails calls while the session
still says CONNECTED: the breaker opens from failures, and no SUSPENDED/CONNECTED
change will reset it. The probe (the session CONNECTED and an ``exists("/")`` round
trip answered) turns it half-open once the server is thawed, with no user call in
between. Steps: tests/clients/_recovery.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from resilience.core.breaker import BreakerState
from tests.clients._recovery import LONG, first_success, left_open_after, open_it, state

from .conftest import Client, MakeClient

pytestmark = pytest.mark.servers("zookeeper")


def _pause(client: Client) -> Any:
    def pause(seconds: float) -> None:
        if client.loop is not None:
            client.loop.run_until_complete(asyncio.sleep(seconds))
        else:
            time.sleep(seconds)
    return pause


def _opened_while_connected(fresh_server: Any, make_client: MakeClient, path: str,
                            **options: Any) -> tuple[Any, Client]:
    server = fresh_server("zookeeper")
    zk = make_client(server.address, session_timeout=10.0, **LONG, **options)
    zk.ensure_path(path, timeout=5.0)
    server.freeze()
    try:
        open_it(lambda: zk.get(path), zk.breaker(zk.endpoints[0]), _pause(zk))
        assert zk.state == "CONNECTED"  # not a session change: failures opened it
    except BaseException:
        server.thaw()
        raise
    return server, zk


def test_probe_ends_the_open_interval_without_a_user_call(
        fresh_server: Any, make_client: MakeClient, path: str) -> None:
    server, zk = _opened_while_connected(fresh_server, make_client, path)
    pause = _pause(zk)
    breaker = zk.breaker(zk.endpoints[0])
    try:
        assert left_open_after(breaker, pause, 0.8) is None  # the probes time out meanwhile
    finally:
        server.thaw()
    # No user call from here on until the breaker has left OPEN.
    took = left_open_after(breaker, pause, 5.0)
    assert took is not None, "still open 5 s after the thaw (the open interval is 30 s)"
    assert state(breaker) is BreakerState.HALF_OPEN
    assert first_success(lambda: zk.get(path), pause, 2.0) < 1.0
    assert state(breaker) is BreakerState.CLOSED


def test_probing_off_leaves_recovery_to_user_traffic(
        fresh_server: Any, make_client: MakeClient, path: str) -> None:
    server, zk = _opened_while_connected(fresh_server, make_client, path,
                                         breaker_health_probe=False)
    assert zk.zk._probing is None
    server.thaw()
    assert left_open_after(zk.breaker(zk.endpoints[0]), _pause(zk), 1.5) is None
    assert zk.state == "CONNECTED"
