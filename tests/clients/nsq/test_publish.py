"""Healthy publishing against real nsqd: acknowledged means nsqd queued it, the
envelope carries the key, caller mistakes pass through without I/O or breaker cost."""

from __future__ import annotations

import time
from typing import Any

import pytest

from resilience.clients.nsq import (
    AsyncPublisher,
    Publisher,
    decode_envelope,
    encode_envelope,
    new_key,
)
from resilience.core.breaker import BreakerState
from resilience.errors import ConfigError
from resilience.servers.nsq import Nsqd
from resilience.testing._server_fixtures import require_installed

from .conftest import MakePub, message_count, new_topic


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_every_publish_is_queued_at_nsqd_when_it_returns(
        nsq: Any, make_publisher: MakePub, transport: str) -> None:
    nsqd = nsq.nsqds[0]
    address = nsqd.http_address if transport == "http" else nsqd.tcp_address
    pub = make_publisher([address], transport=transport)
    topic = new_topic()
    assert pub.publish(topic, b"one") is None
    assert pub.mpublish(topic, [b"two", b"three"]) == [None, None]
    assert pub.dpublish(topic, b"later", 0.05) is None
    assert message_count(nsqd.http_address, topic) == 4


def test_keyed_publisher_wraps_each_message_in_an_envelope(
        nsq: Any, make_publisher: MakePub) -> None:
    pub = make_publisher(nsq.nsqd_tcp_addresses, keys=True)
    key = pub.publish(new_topic(), b"body")
    assert isinstance(key, str) and len(key) == 32
    assert pub.publish(new_topic(), b"body", key="order-7") == "order-7"
    keys = pub.mpublish(new_topic(), [b"a", b"b"], keys=["k1", "k2"])
    assert keys == ["k1", "k2"]


def test_envelope_round_trips_and_leaves_plain_bodies_alone() -> None:
    key = new_key()
    assert decode_envelope(encode_envelope(key, b"payload")) == (key, b"payload")
    assert decode_envelope(b"plain") == (None, b"plain")
    assert decode_envelope(b"\x00RK1") == (None, b"\x00RK1")  # truncated: no key
    with pytest.raises(ValueError):
        encode_envelope("", b"x")
    with pytest.raises(ValueError):
        encode_envelope("k" * 256, b"x")


@pytest.mark.parametrize("bad", [
    lambda p: p.publish("bad topic", b"x"),
    lambda p: p.publish("t", b""),
    lambda p: p.publish("t", "text"),
    lambda p: p.mpublish("t", []),
    lambda p: p.mpublish("t", [b"a"], keys=["k1", "k2"]),
    lambda p: p.dpublish("t", b"x", -1),
])
def test_bad_arguments_raise_value_error_before_any_io(bad: Any, make_publisher: MakePub) -> None:
    pub = make_publisher(["127.0.0.1:1"])  # nothing listens there: I/O would fail differently
    with pytest.raises(ValueError):
        bad(pub)
    assert pub.breaker("127.0.0.1:1").state(time.monotonic()) is BreakerState.CLOSED


class SmallNsqd(Nsqd):
    """nsqd refusing messages over 100 bytes: its E_BAD_MESSAGE comes back while the
    whole request still fits the socket buffers (with the default 1 MiB limit, nsqd
    may close the connection before a large body is even written)."""

    def command(self) -> list[str]:
        return [*super().command(), "--max-msg-size=100"]


def test_message_nsqd_refuses_is_a_caller_error_not_a_failure(
        make_publisher: MakePub, tmp_path: Any) -> None:
    require_installed("nsq")
    nsqd = SmallNsqd(tmp_path / "small").start(15.0)
    try:
        pub = make_publisher([nsqd.tcp_address])
        for _ in range(6):  # more than the breaker's minimum calls
            with pytest.raises(ValueError, match="E_BAD_MESSAGE"):
                pub.publish(new_topic(), b"x" * 200)
        assert pub.breaker(nsqd.tcp_address).state(time.monotonic()) is BreakerState.CLOSED
        assert pub.publish(new_topic(), b"fine") is None
    finally:
        nsqd.kill()


def test_construction_opens_nothing_and_reads_the_environment(nsq: Any) -> None:
    env = {"RESILIENCE_NSQ_NSQD_TCP": ",".join(nsq.nsqd_tcp_addresses),
           "RESILIENCE_NSQ_TIMEOUT_MS": "150"}
    pub = Publisher(environ=env)
    assert pub.endpoints == tuple(nsq.nsqd_tcp_addresses) and pub.options.timeout == 0.15
    assert pub._driver.peek() is None
    pub.close()
    http = AsyncPublisher(environ={**env, "RESILIENCE_NSQ_TRANSPORT": "http",
                                   "RESILIENCE_NSQ_NSQD_HTTP": nsq.nsqd_http_addresses[0]})
    assert http.endpoints == (nsq.nsqd_http_addresses[0],)
    with pytest.raises(ConfigError, match="RESILIENCE_NSQ_TRANSPORT"):
        Publisher(environ={"RESILIENCE_NSQ_TRANSPORT": "udp"})
