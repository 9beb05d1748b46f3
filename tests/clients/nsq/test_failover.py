"""Several nsqd: a publish that nsqd did not queue moves on to the next nsqd inside the
same deadline; an ambiguous one does so only for a keyed message."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from resilience.core.breaker import BreakerState
from resilience.errors import BackendTimeoutError

from .conftest import BUDGET, MARGIN, MakePub, message_count, new_topic, timed


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_refused_nsqd_fails_over_to_the_next_at_once(nsq: Any, make_publisher: MakePub) -> None:
    second = nsq.nsqds[1]
    pub = make_publisher([dead_address(), second.tcp_address])
    topic = new_topic()
    for _ in range(5):
        wall, error = timed(lambda: pub.publish(topic, b"x"))  # unkeyed: safe, not queued
        assert error is None and wall < BUDGET
    assert message_count(second.http_address, topic) == 5


def test_killed_nsqd_fails_over_even_with_a_pooled_connection(
        nsq: Any, make_publisher: MakePub, tmp_path: Any) -> None:
    from resilience.servers.nsq import Nsqd

    doomed = Nsqd(tmp_path / "doomed", name="doomed").start(15.0)
    try:
        second = nsq.nsqds[1]
        pub = make_publisher([doomed.tcp_address, second.tcp_address])
        topic = new_topic()
        pub.publish(topic, b"before", timeout=2.0)
        assert message_count(doomed.http_address, topic) == 1
        doomed.kill()
        time.sleep(0.05)
        for _ in range(3):
            wall, error = timed(lambda: pub.publish(topic, b"after"))
            assert error is None and wall < BUDGET + MARGIN
    finally:
        doomed.kill()
    assert message_count(second.http_address, topic) == 3


def test_frozen_nsqd_raises_ambiguous_unkeyed_but_fails_over_keyed(
        nsq: Any, make_publisher: MakePub) -> None:
    first, second = nsq.nsqds
    pub = make_publisher(nsq.nsqd_tcp_addresses, breaker_enabled=False)
    keyed = make_publisher(nsq.nsqd_tcp_addresses, keys=True)
    topic = new_topic()
    pub.publish(topic, b"warm", timeout=2.0)
    keyed.publish(topic, b"warm", timeout=2.0)
    before = message_count(second.http_address, topic)
    first.freeze()
    try:
        wall, error = timed(lambda: pub.publish(topic, b"x"))
        assert isinstance(error, BackendTimeoutError) and error.ambiguous
        assert wall < BUDGET + MARGIN
        walls = []
        for _ in range(6):
            wall, error = timed(lambda: keyed.publish(topic, b"y"))
            assert error is None, error
            walls.append(wall)
        assert max(walls) < BUDGET + MARGIN
        # Half the budget went to the frozen nsqd until its breaker opened; then none.
        assert keyed.breaker(first.tcp_address).state(time.monotonic()) is BreakerState.OPEN
        assert walls[-1] < BUDGET / 2
    finally:
        first.thaw()
    assert message_count(second.http_address, topic) - before == 6


@pytest.mark.netns
def test_firewalled_nsqd_fails_over_after_the_connect_timeout(
        nsq: Any, make_publisher: MakePub, server_in_netns: Any) -> None:
    from resilience.servers.nsq import Nsqd

    walled, ns = server_in_netns(Nsqd, start_timeout=15.0)
    second = nsq.nsqds[1]
    pub = make_publisher([walled.tcp_address, second.tcp_address], connect_timeout=0.05)
    topic = new_topic()
    rule = ns.firewall.drop(walled.ports["tcp"])
    try:
        for _ in range(3):
            wall, error = timed(lambda: pub.publish(topic, b"x"))  # not keyed: never sent
            assert error is None and wall < BUDGET + MARGIN
    finally:
        rule.remove()
    assert message_count(second.http_address, topic) == 3


def test_http_transport_fails_over_too(nsq: Any, make_publisher: MakePub) -> None:
    second = nsq.nsqds[1]
    pub = make_publisher([dead_address(), second.http_address], transport="http")
    topic = new_topic()
    assert pub.publish(topic, b"x") is None
    assert pub.mpublish(topic, [b"a", b"b"]) == [None, None]
    assert message_count(second.http_address, topic) == 3
