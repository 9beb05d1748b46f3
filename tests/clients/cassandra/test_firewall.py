"""Firewall faults on a Cassandra node inside a network namespace: REJECT, DROP and DROP
of ESTABLISHED packets, against a connected client and against a first connect.

One node for the three rules (a Cassandra start costs 5-10 s); each rule is removed and
the client recovers before the next.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilience.errors import ResilienceError
from tests.clients.cassandra.conftest import BUDGET, MARGIN, assert_within_budget, timed

pytestmark = [pytest.mark.servers("cassandra"), pytest.mark.slow, pytest.mark.netns]

READ = "SELECT release_version FROM system.local"


def _recover(db: Any, within: float = 15.0) -> None:
    give_up = time.monotonic() + within
    while True:
        try:
            db.execute(READ, timeout=1.0)
            return
        except ResilienceError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.25)


def test_reject_drop_and_established_drop_end_within_budget(
        server_in_netns: Any, make_db: Any) -> None:
    """Under each rule a connected client's reads and a new client's first reads end
    within the 100 ms budget (the raw driver: 5 s per connect, 10 s per request)."""
    from resilience.servers.cassandra import Cassandra as Node

    node, ns = server_in_netns(Node, start_timeout=120.0)
    contact = f"{node.host}:{node.port}"
    db = make_db(contact, keyspace=None)
    _recover(db)
    fw = ns.firewall
    rules: dict[str, Callable[[], Any]] = {
        "reject": lambda: fw.reject(node.port),
        "drop": lambda: fw.drop(node.port),
        "established-drop": lambda: fw.drop_established(node.port),
    }
    for name, make_rule in rules.items():
        rule = make_rule()
        try:
            outcomes = [timed(functools.partial(db.execute, READ)) for _ in range(6)]
            assert_within_budget(outcomes, what=f"{name}, connected")
            fresh = make_db(contact, keyspace=None, connect_timeout=0.5)
            first = [timed(functools.partial(fresh.execute, READ)) for _ in range(3)]
            assert all(err is not None and wall < BUDGET + MARGIN for wall, err in first), \
                (name, first)
        finally:
            rule.remove()
        for breaker in ("cluster", contact):
            db.breaker(breaker).reset()
        _recover(db)
