"""A de-duplicating consumer: every key processed once, whatever nsqd redelivers.

A keyed publisher sends ten orders and then, as a producer retrying after an
ambiguous timeout would, sends three of them again (same keys, new nsqd message ids).
The consumer's seen-store (memcached, through the project's own client; ``add`` with a
TTL) skips the repeats; a poison message goes to the dead-letter handler after three
attempts instead of being dropped.

Run: .venv/bin/python examples/nsq_dedup_consumer.py   (needs nsqd, nsqlookupd, memcached)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from resilience.clients.memcache import Memcache
from resilience.clients.nsq import Consumer, MemcacheSeenStore, Message, Publisher
from resilience.servers.memcached import Memcached
from resilience.servers.nsq import cluster


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nsq = cluster(Path(tmp)).start()
        memcached = Memcached(Path(tmp) / "memcached").start()
        try:
            processed: list[str] = []
            dead: list[Message] = []

            def handle(msg: Message) -> None:
                if msg.body == b"poison":
                    raise ValueError("cannot parse")
                processed.append(msg.body.decode())

            cache = Memcache([memcached.address], environ={})
            consumer = Consumer(handle, topic="orders", channel="billing",
                                lookupd=nsq.lookupd_http_addresses, lookupd_poll_interval=0.2,
                                seen_store=MemcacheSeenStore(cache), dead_letter=dead.append,
                                max_attempts=3, requeue_delay=0.05, environ={})
            pub = Publisher(nsq.nsqd_tcp_addresses, keys=True, timeout=0.5, environ={})
            keys = [pub.publish("orders", b"order %d" % i) for i in range(10)]
            consumer.start()
            for i in (2, 5, 7):  # a producer's retries: the same keys again
                pub.publish("orders", b"order %d" % i, key=keys[i])
            pub.publish("orders", b"poison")
            end = time.monotonic() + 10
            while time.monotonic() < end and not (len(processed) >= 10 and dead):
                time.sleep(0.05)
            time.sleep(0.3)
            consumer.close()
            print("processed:", sorted(processed, key=lambda s: int(s.split()[1])))
            print("stats:", consumer.stats)
            print("dead-lettered:", [m.body for m in dead])
            assert len(processed) == 10 and consumer.stats["duplicates"] == 3 and len(dead) == 1
            pub.close()
            cache.close()
        finally:
            memcached.kill()
            nsq.stop()


if __name__ == "__main__":
    main()
