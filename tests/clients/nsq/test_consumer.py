"""The consumers against real nsqd: each message once, duplicates skipped by key,
per-message requeue, handler deadline, dead letters, a store outage, graceful close,
and an nsqd frozen mid-stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilience.clients.memcache import Memcache
from resilience.clients.nsq import (
    AsyncConsumer,
    Consumer,
    MemcacheSeenStore,
    MemorySeenStore,
    Message,
    Publisher,
)

from .conftest import create_channel, finished, message_count, new_topic

QUICK: dict[str, Any] = {"environ": {}, "requeue_delay": 0.05, "max_requeue_delay": 0.2,
                         "reconnect_interval": 0.2, "heartbeat_interval": 1.0}


def wait_for(cond: Callable[[], bool], within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def setup(nsq: Any, channel: str = "c") -> tuple[str, Publisher]:
    topic = new_topic("cons")
    for nsqd in nsq.nsqds:
        create_channel(nsqd.http_address, topic, channel)
    return topic, Publisher(nsq.nsqd_tcp_addresses, environ={}, timeout=2.0)


def test_lookupd_consumer_gets_every_message_once_and_skips_duplicate_keys(nsq: Any) -> None:
    topic, pub = setup(nsq)
    got: list[tuple[str | None, bytes]] = []
    consumer = Consumer(lambda m: got.append((m.key, m.body)), topic=topic, channel="c",
                        lookupd=nsq.lookupd_http_addresses, seen_store=MemorySeenStore(),
                        lookupd_poll_interval=0.2, **QUICK).start()
    try:
        for i in range(10):
            pub.publish(topic, b"m%d" % i, key=f"k{i}")
        pub.publish(topic, b"again", key="k3")  # a producer's retry of k3
        Publisher(nsq.nsqd_tcp_addresses[1:], environ={}).publish(topic, b"plain")
        assert wait_for(lambda: len(got) == 11 and consumer.stats["duplicates"] == 1)
        assert sorted(k for k, _ in got if k) == sorted(f"k{i}" for i in range(10))
        assert (None, b"plain") in got
        assert len(consumer.connected) == 2  # both nsqd, found through lookupd
    finally:
        consumer.close()
        pub.close()


def test_failure_requeues_only_that_message_with_its_own_delay(nsq: Any) -> None:
    topic, pub = setup(nsq)
    done: list[bytes] = []
    tries: dict[bytes, int] = {}

    def handle(msg: Message) -> None:
        tries[msg.body] = msg.attempts
        if msg.body == b"flaky" and msg.attempts < 3:
            raise RuntimeError("not yet")
        done.append(msg.body)

    consumer = Consumer(handle, topic=topic, channel="c", nsqd=nsq.nsqd_tcp_addresses,
                        **{**QUICK, "requeue_delay": 0.5, "max_requeue_delay": 1.0}).start()
    try:
        pub.publish(topic, b"flaky")
        time.sleep(0.1)
        began = time.monotonic()
        pub.publish(topic, b"steady")
        assert wait_for(lambda: b"steady" in done)
        assert time.monotonic() - began < 0.5  # no reader-wide backoff after a failure
        assert wait_for(lambda: b"flaky" in done)
        assert tries[b"flaky"] == 3 and consumer.stats["requeued"] == 2
    finally:
        consumer.close()


def test_past_max_attempts_a_message_is_dead_lettered_never_dropped(nsq: Any) -> None:
    topic, pub = setup(nsq)
    dead: list[Message] = []

    def fail(msg: Message) -> None:
        raise RuntimeError("poison")

    with Consumer(fail, topic=topic, channel="c", nsqd=nsq.nsqd_tcp_addresses,
                  max_attempts=2, dead_letter=dead.append, **QUICK):
        pub.publish(topic, b"poison", key="p1")
        assert wait_for(lambda: len(dead) == 1)
    assert dead[0].key == "p1" and dead[0].attempts == 3

    topic2, _pub2 = setup(nsq)
    with Consumer(fail, topic=topic2, channel="c", nsqd=nsq.nsqd_tcp_addresses[:1],
                  max_attempts=1, **QUICK) as consumer:  # default: <topic>.dlq
        Publisher(nsq.nsqd_tcp_addresses[:1], environ={}).publish(topic2, b"poison")
        assert wait_for(lambda: consumer.stats["dead_lettered"] == 1)
    assert message_count(nsq.nsqds[0].http_address, topic2 + ".dlq") == 1


def test_handler_past_its_deadline_is_requeued(nsq: Any) -> None:
    topic, pub = setup(nsq)
    runs: list[int] = []

    def slow_once(msg: Message) -> None:
        runs.append(msg.attempts)
        if msg.attempts == 1:
            time.sleep(0.6)

    with Consumer(slow_once, topic=topic, channel="c", nsqd=nsq.nsqd_tcp_addresses,
                  handler_timeout=0.2, **QUICK) as consumer:
        pub.publish(topic, b"x")
        assert wait_for(lambda: consumer.stats["processed"] == 1)
        assert consumer.stats["failed"] == 1 and runs[:2] == [1, 2]


def test_seen_store_down_requeues_instead_of_processing(nsq: Any) -> None:
    topic, pub = setup(nsq)
    handled: list[Message] = []
    store = MemcacheSeenStore(Memcache(["127.0.0.1:1"], environ={}, timeout=0.05))
    with Consumer(handled.append, topic=topic, channel="c", nsqd=nsq.nsqd_tcp_addresses,
                  seen_store=store, **QUICK) as consumer:
        pub.publish(topic, b"x", key="k")
        assert wait_for(lambda: consumer.stats["store_errors"] >= 2)
        assert handled == [] and consumer.stats["requeued"] >= 2


def test_memcached_store_deduplicates_across_two_consumers(nsq: Any, memcached: Any) -> None:
    topic, _pub = setup(nsq)
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        with lock:
            counts[msg.key or ""] = counts.get(msg.key or "", 0) + 1

    cache = Memcache([memcached.address], environ={})
    consumers = [Consumer(handle, topic=topic, channel="c", nsqd=[address],
                          seen_store=MemcacheSeenStore(cache, prefix=topic + ":"), **QUICK)
                 for address in nsq.nsqd_tcp_addresses]
    for c in consumers:
        c.start()
    try:
        for i in range(20):  # every key published to both nsqd: 40 deliveries
            for address in nsq.nsqd_tcp_addresses:
                Publisher([address], environ={}).publish(topic, b"v", key=f"k{i}")
        assert wait_for(lambda: sum(c.stats["duplicates"] + c.stats["processed"]
                                    for c in consumers) == 40)
        assert counts == {f"k{i}": 1 for i in range(20)}
    finally:
        for c in consumers:
            c.close()
        cache.close()


def test_close_finishes_in_flight_work_and_requeues_what_overruns_the_drain(nsq: Any) -> None:
    topic, _pub = setup(nsq)
    nsqd = nsq.nsqds[0]
    started = threading.Event()
    finished: list[bytes] = []

    def handle(msg: Message) -> None:
        started.set()
        time.sleep(0.3 if msg.body == b"short" else 2.0)
        finished.append(msg.body)

    consumer = Consumer(handle, topic=topic, channel="c", nsqd=[nsqd.tcp_address],
                        **QUICK).start()
    single = Publisher([nsqd.tcp_address], environ={})
    single.publish(topic, b"short")
    single.publish(topic, b"long")
    assert started.wait(5)
    time.sleep(0.1)
    began = time.monotonic()
    consumer.close(drain=0.5)
    assert time.monotonic() - began < 1.5
    assert b"short" in finished and consumer.stats["requeued"] == 1  # "long" went back
    again: list[bytes] = []
    with Consumer(lambda m: again.append(m.body), topic=topic, channel="c",
                  nsqd=[nsqd.tcp_address], **QUICK):
        assert wait_for(lambda: again == [b"long"], 5)


def test_consumer_whose_nsqd_freezes_mid_stream_keeps_the_other_and_resumes(nsq: Any) -> None:
    topic, _pub = setup(nsq)
    first, second = nsq.nsqds
    got: list[bytes] = []
    one = Publisher([first.tcp_address], environ={})
    two = Publisher([second.tcp_address], environ={})
    # msg_timeout 1 s: after the thaw nsqd may first hand a message to the connection
    # it has not yet noticed is gone; it redelivers it once msg_timeout passes.
    with Consumer(lambda m: got.append(m.body), topic=topic, channel="c",
                  nsqd=nsq.nsqd_tcp_addresses, msg_timeout=1.0, **QUICK) as consumer:
        one.publish(topic, b"a1")
        assert wait_for(lambda: got == [b"a1"])
        # The handler has run, but nsqd may not have read the FIN yet; frozen with a1 in
        # flight past msg_timeout, nsqd would rightly deliver it again after the thaw.
        assert wait_for(lambda: finished(first.http_address, topic, "c") == 1)
        first.freeze()
        try:
            two.publish(topic, b"b1")
            assert wait_for(lambda: b"b1" in got, 3)  # the healthy nsqd still delivers
            # Silent for two heartbeats (1 s each): the connection is dropped.
            assert wait_for(lambda: consumer.connected == (second.tcp_address,), 6)
        finally:
            first.thaw()
        one.publish(topic, b"a2")
        assert wait_for(lambda: b"a2" in got and len(consumer.connected) == 2, 5), (
            got, consumer.connected, consumer.stats)
    assert sorted(got) == [b"a1", b"a2", b"b1"]


def test_async_consumer_runs_an_async_handler_on_the_callers_loop(nsq: Any) -> None:
    topic, pub = setup(nsq)

    async def main() -> list[bytes]:
        got: list[bytes] = []
        loop = asyncio.get_running_loop()

        async def handle(msg: Message) -> None:
            assert asyncio.get_running_loop() is loop
            got.append(msg.body)

        async with AsyncConsumer(handle, topic=topic, channel="c",
                                 nsqd=nsq.nsqd_tcp_addresses, seen_store=MemorySeenStore(),
                                 **QUICK):
            for i in range(5):
                pub.publish(topic, b"%d" % i, key=f"k{i}")
            pub.publish(topic, b"dup", key="k0")
            end = time.monotonic() + 10
            while len(got) < 5 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        return got

    assert sorted(asyncio.run(main())) == [b"0", b"1", b"2", b"3", b"4"]


def test_construction_opens_nothing_and_reads_the_environment() -> None:
    threads = set(threading.enumerate())  # other tests' threads may end meanwhile
    consumer = Consumer(lambda m: None, environ={
        "RESILIENCE_NSQ_TOPIC": "orders", "RESILIENCE_NSQ_CHANNEL": "billing",
        "RESILIENCE_NSQ_DISCOVERY": "lookupd", "RESILIENCE_NSQ_LOOKUPD_HTTP": "127.0.0.1:1"})
    assert (consumer.topic, consumer.channel) == ("orders", "billing")
    assert consumer.options.lookupd_http == ("127.0.0.1:1",)
    assert not set(threading.enumerate()) - threads and consumer.stats == {}
    consumer.close()  # never started: nothing to do


def test_async_consumer_deduplicates_through_async_memcached(nsq: Any, memcached: Any) -> None:
    from resilience.clients.memcache import AsyncMemcache
    from resilience.clients.nsq import AsyncMemcacheSeenStore

    topic, pub = setup(nsq)

    async def main() -> tuple[list[str], dict[str, int]]:
        got: list[str] = []

        async def handle(msg: Message) -> None:
            got.append(msg.key or "")

        cache = AsyncMemcache([memcached.address], environ={})
        store = AsyncMemcacheSeenStore(cache, prefix=topic + ":")
        consumer = AsyncConsumer(handle, topic=topic, channel="c",
                                 nsqd=nsq.nsqd_tcp_addresses, seen_store=store, **QUICK)
        await consumer.start()
        for key in ("a", "b", "a", "c", "b"):
            pub.publish(topic, b"x", key=key)
        end = time.monotonic() + 10
        while consumer.stats.get("duplicates", 0) < 2 and time.monotonic() < end:
            await asyncio.sleep(0.05)
        await consumer.aclose()
        await cache.aclose()
        return got, consumer.stats

    got, stats = asyncio.run(main())
    assert sorted(got) == ["a", "b", "c"] and stats["duplicates"] == 2


@pytest.mark.parametrize("bad", [{"topic": "no spaces"}, {"channel": "a/b"}])
def test_bad_subscription_names_fail_at_construction(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Consumer(lambda m: None, **{"topic": "t", "channel": "c", **bad}, environ={})
