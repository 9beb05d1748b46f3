"""The rest of the fault matrix on a standalone server: through the fault proxy (reset,
slow drip, garbage) and by iptables in a network namespace (REJECT, DROP of new and of
ESTABLISHED packets). Every call ends by its deadline; once the session is lost or the
breaker opens, calls are refused in microseconds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import pytest

from resilience.errors import BackendError, CircuitOpenError
from resilience.faults import toxics
from resilience.servers.zookeeper import ZooKeeper as ZooKeeperServer

from .conftest import BUDGET, MARGIN, SMALL, MakeClient
from .test_faults import timed, wait_for

TOXICS: dict[str, Any] = {
    "reset": lambda: toxics.Reset(after_bytes=1),
    "slow-drip": lambda: toxics.Slicer(average_size=1, delay_us=20_000),
    "garbage": lambda: toxics.Garbage(ratio=1.0),
}


def assert_bounded(outcomes: Sequence[tuple[float, BaseException | None]]) -> None:
    assert all(wall < BUDGET + MARGIN for wall, _ in outcomes), outcomes
    assert all(isinstance(e, (BackendError, CircuitOpenError)) for _, e in outcomes), outcomes
    assert statistics.median(w for w, _ in outcomes) < BUDGET + SMALL, outcomes
    # Refused without I/O by the end: the session is gone or the breaker is open.
    assert statistics.median(w for w, _ in outcomes[-3:]) < 0.01, outcomes


@pytest.mark.parametrize("fault", sorted(TOXICS))
def test_proxy_faults(zookeeper: Any, fault_proxy: Any, make_client: MakeClient, path: str,
                      fault: str) -> None:
    """Reset, a reply dripping in, garbage: bounded, then refused at once."""
    proxy = fault_proxy(zookeeper.address)
    zk = make_client(f"{proxy.host}:{proxy.port}", session_timeout=10.0)
    zk.exists("/", timeout=2.0)
    with proxy.toxic(TOXICS[fault]()):
        assert_bounded([timed(lambda: zk.get(path)) for _ in range(10)])
    # Served again once the fault is gone (a garbled header kills kazoo's connection
    # thread, which raw kazoo never restarts).
    assert wait_for(lambda: timed(lambda: zk.exists("/", timeout=1.0))[1] is None, 15.0)


@pytest.mark.parametrize("rule", ["reject", "drop", "established"])
def test_firewall_faults(server_in_netns: Any, make_client: MakeClient, path: str,
                         rule: str) -> None:
    """iptables REJECT, SYN DROP (a fresh client) and ESTABLISHED DROP (a connected one):
    every call within its budget, then refused at once."""
    server, ns = server_in_netns(ZooKeeperServer)
    zk = make_client(server.address, session_timeout=10.0, connect_timeout=0.3)
    fw = ns.firewall
    if rule == "established":
        zk.exists("/", timeout=5.0)
        fw.drop_established(server.port)
    else:
        (fw.reject if rule == "reject" else fw.drop)(server.port)
    outcomes = [timed(lambda: zk.get(path)) for _ in range(12)]
    assert_bounded(outcomes)
