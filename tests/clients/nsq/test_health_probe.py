"""Health probes of an nsqd whose breaker is open, against a real nsqd frozen with SIGSTOP.

The probe (``IDENTIFY`` on the TCP port, ``GET /ping`` on the HTTP one, each on a
connection of its own) turns the breaker half-open once nsqd answers again, with no
publish in between; nothing is published by it. Steps: tests/clients/_recovery.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from resilience.core.breaker import BreakerState
from tests.clients._recovery import LONG, first_success, left_open_after, open_it, state

from .conftest import MakePub, Pub, message_count, new_topic

pytestmark = pytest.mark.servers("nsq")


def _pause(pub: Pub) -> Any:
    def pause(seconds: float) -> None:
        if pub.loop is not None:
            pub.loop.run_until_complete(asyncio.sleep(seconds))
        else:
            time.sleep(seconds)
    return pause


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_probe_ends_the_open_interval_without_a_publish(
        nsq: Any, make_publisher: MakePub, transport: str) -> None:
    nsqd = nsq.nsqds[0]
    address = nsqd.http_address if transport == "http" else nsqd.tcp_address
    pub = make_publisher([address], transport=transport, **LONG)
    pause = _pause(pub)
    topic = new_topic("probe")
    pub.publish(topic, b"before")
    breaker = pub.breaker(address)
    nsqd.freeze()
    try:
        written = open_it(lambda: pub.publish(topic, b"lost"), breaker, pause)
        assert left_open_after(breaker, pause, 0.8) is None  # the probes fail meanwhile
    finally:
        nsqd.thaw()
    # No publish from here on until the breaker has left OPEN.
    took = left_open_after(breaker, pause, 5.0)
    assert took is not None, "still open 5 s after the thaw (the open interval is 30 s)"
    assert state(breaker) is BreakerState.HALF_OPEN
    # Nothing beyond the users' publishes (those written while frozen are queued after
    # the thaw): the probe publishes nothing.
    assert message_count(nsqd.http_address, topic) <= 1 + written
    assert first_success(lambda: pub.publish(topic, b"after"), pause, 2.0) < 1.0
    assert state(breaker) is BreakerState.CLOSED


def test_probing_off_leaves_recovery_to_user_traffic(nsq: Any, make_publisher: MakePub) -> None:
    nsqd = nsq.nsqds[0]
    pub = make_publisher([nsqd.tcp_address], breaker_health_probe=False, **LONG)
    assert pub.pub._probing is None
    pause = _pause(pub)
    topic = new_topic("probe-off")
    pub.publish(topic, b"before")
    breaker = pub.breaker(nsqd.tcp_address)
    nsqd.freeze()
    try:
        open_it(lambda: pub.publish(topic, b"lost"), breaker, pause)
    finally:
        nsqd.thaw()
    assert left_open_after(breaker, pause, 1.5) is None
