"""Publish to two nsqd, the local one first; freeze it and keep publishing.

Unkeyed messages fail fast and say whether they might have been queued anyway
(``ambiguous``); keyed ones (an idempotency key in the envelope) move on to the other
nsqd inside the same deadline. Once the frozen nsqd's breaker opens, publishes go
straight to the healthy one.

Run: .venv/bin/python examples/nsq_publisher.py   (needs nsqd and nsqlookupd)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from resilience.clients.nsq import Publisher
from resilience.errors import ResilienceError
from resilience.servers.nsq import cluster


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nsq = cluster(Path(tmp)).start()
        try:
            local = nsq.nsqds[0]
            plain = Publisher(nsq.nsqd_tcp_addresses, timeout=0.2, environ={})
            keyed = Publisher(nsq.nsqd_tcp_addresses, timeout=0.2, keys=True, environ={},
                              breaker_minimum_calls=3, breaker_window_size=3)
            print("published:", plain.publish("orders", b"order 1"))
            print("keys:", keyed.mpublish("orders", [b"order 2", b"order 3"]))
            local.freeze()
            try:
                plain.publish("orders", b"order 4")
            except ResilienceError as exc:
                print(f"unkeyed: {type(exc).__name__}, ambiguous={exc.ambiguous}")
            for i in range(5, 11):
                start = time.monotonic()
                key = keyed.publish("orders", b"order %d" % i)
                ms = (time.monotonic() - start) * 1000
                print(f"keyed order {i}: acknowledged in {ms:.1f} ms (key {key})")
            state = keyed.breaker(local.tcp_address).state(time.monotonic()).value
            print("breaker of the frozen nsqd:", state)
            local.thaw()
            plain.close()
            keyed.close()
        finally:
            nsq.stop()


if __name__ == "__main__":
    main()
