"""No acknowledged message lost, none processed twice, while one of two nsqd is frozen,
killed and restarted on a schedule.

A keyed publisher publishes N messages to [A, B] (A first) while A is frozen, thawed,
killed (SIGTERM: nsqd's clean shutdown) and restarted; a publish that fails is
published again with the same key (at-least-once on the producer's side). A
de-duplicating consumer subscribed to both (channel pre-created on each) must process
exactly the acknowledged keys, each once. A runs with ``--mem-queue-size=0``: every
acknowledged message is on its disk queue before the ``OK``.

A SIGKILL instead of SIGTERM lost 4 of 300 acknowledged messages here: messages nsqd
had read from its disk queue and sent to the consumer (in flight, held only in
memory) die with the process. That is nsqd's durability, not the client's: see
docs/nsq.md#what-acknowledged-means.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

from resilience.clients.nsq import Consumer, MemorySeenStore, Message, Publisher
from resilience.errors import ResilienceError
from resilience.servers.nsq import Nsqd
from resilience.testing._server_fixtures import require_installed

from .conftest import create_channel, new_topic

N = 300


class DiskNsqd(Nsqd):
    """nsqd whose queues are all on disk (``--mem-queue-size=0``)."""

    def command(self) -> list[str]:
        return [*super().command(), "--mem-queue-size=0"]


def test_every_acknowledged_message_is_processed_exactly_once(tmp_path: Path) -> None:
    require_installed("nsq")
    a = DiskNsqd(tmp_path / "a", name="nsqd-a", node_id=11).start(15.0)
    b = DiskNsqd(tmp_path / "b", name="nsqd-b", node_id=12).start(15.0)
    topic, channel = new_topic("noloss"), "work"
    for server in (a, b):
        create_channel(server.http_address, topic, channel)
    seen: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        assert msg.key is not None
        with lock:
            seen[msg.key] += 1

    store = MemorySeenStore()
    consumer = Consumer(handle, topic=topic, channel=channel,
                        nsqd=[a.tcp_address, b.tcp_address], seen_store=store,
                        heartbeat_interval=1.0, reconnect_interval=0.2, timeout=0.5,
                        connect_timeout=0.2, environ={}, msg_timeout=5.0).start()
    pub = Publisher([a.tcp_address, b.tcp_address], keys=True, timeout=0.4,
                    connect_timeout=0.1, retry_attempts=3, environ={},
                    breaker_minimum_calls=4, breaker_window_size=4, breaker_open_duration=0.3)
    acked: set[str] = set()
    attempts = failures = 0
    done = threading.Event()

    def chaos() -> None:  # bounded: two rounds of freeze 0.6 s, stop, 0.5 s down, restart
        for _ in range(2):
            time.sleep(0.3)
            with a.frozen_for():
                time.sleep(0.6)
            time.sleep(0.3)
            a.stop()
            time.sleep(0.5)
            a.start(15.0)
        done.set()

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        deadline = time.monotonic() + 60
        for i in range(N):
            key = f"msg-{i}"
            while time.monotonic() < deadline:
                attempts += 1
                try:
                    pub.publish(topic, b"payload %d" % i, key=key)
                    acked.add(key)
                    break
                except ResilienceError:
                    failures += 1  # the same key again: the consumer de-duplicates
            time.sleep(0.01)  # spread N publishes over the chaos schedule (~3 s)
        chaos_thread.join(30)
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up and not acked <= set(seen):
            time.sleep(0.1)
        time.sleep(1.0)  # any late duplicate would show now
    finally:
        chaos_thread.join(30)
        consumer.close(drain=2.0)
        pub.close()
        a.kill()
        b.kill()
    stats = consumer.stats
    print(f"\npublished {N} keyed messages in {attempts} publish calls ({failures} failed), "
          f"acknowledged {len(acked)}, consumed {sum(seen.values())} (distinct "
          f"{len(seen)}), duplicates skipped {stats['duplicates']}, stats {stats}")
    assert done.is_set()
    assert len(acked) == N
    assert set(seen) == acked, f"lost: {sorted(acked - set(seen))[:10]}"
    assert max(seen.values()) == 1, [k for k, n in seen.items() if n > 1][:10]
