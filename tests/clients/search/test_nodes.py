"""Per-node breakers: two single-node clusters behind one client (the session's server
and one in a network namespace). When one node's packets are dropped, its calls end by
their deadline, its breaker opens, and from then on every call goes to the other node:
no call waits on the lost one, none is rejected while a healthy node remains."""

from __future__ import annotations

import time
from typing import Any

from resilience.core.breaker import BreakerState
from resilience.errors import BackendError, CircuitOpenError

from ..memcache.conftest import timed
from .conftest import INDEX, MakeClient


def test_a_lost_node_is_skipped_once_its_breaker_opens(
        node: Any, netns_node: Any, make_client: MakeClient) -> None:
    client = make_client([node.url, netns_node.url], retry_attempts=1)
    lost = netns_node.url.split("://")[1]
    for _ in range(4):  # both nodes answer
        client.get(index=INDEX, id="1", timeout=2.0)
    rule = netns_node.namespace.firewall.drop_established(netns_node.port)
    try:
        outcomes = [timed(lambda: client.get(index=INDEX, id="1")) for _ in range(16)]
        failed = [(wall, e) for wall, e in outcomes if e is not None]
        assert failed and all(isinstance(e, BackendError) for _, e in failed)
        assert all(e.endpoint == lost for _, e in failed)
        assert all(wall < 0.1 + 0.25 for wall, _ in outcomes)
        assert client.breaker(lost).state(time.monotonic()) is BreakerState.OPEN
        later = [timed(lambda: client.get(index=INDEX, id="1")) for _ in range(10)]
        assert all(e is None for _, e in later), later  # all on the healthy node
    finally:
        rule.remove()


def test_every_breaker_open_rejects_without_io(node: Any, netns_node: Any,
                                               make_client: MakeClient) -> None:
    client = make_client([node.url, netns_node.url])
    for endpoint in client.endpoints:
        client.breaker(endpoint).force_open()
    elapsed, error = timed(lambda: client.get(index=INDEX, id="1"))
    assert isinstance(error, CircuitOpenError) and elapsed < 0.01
