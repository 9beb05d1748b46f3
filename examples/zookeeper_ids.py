"""k-sortable 64-bit IDs (Snowflake): the worker number is claimed once through an
ephemeral node; after that an ID costs microseconds and touches no server.

Run: .venv/bin/python examples/zookeeper_ids.py
(needs ZooKeeper: python -m resilience servers install zookeeper)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from resilience.clients.zookeeper import ZooKeeper, parse_id
from resilience.servers.zookeeper import ZooKeeper as ZooKeeperServer


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ZooKeeperServer(Path(tmp)).start(timeout=30.0)
        zk = ZooKeeper(server.address, timeout=0.5, connect_timeout=5.0, environ={})
        try:
            ids = zk.id_generator("/services/orders/id-workers")
            print("claimed worker", ids.claim(timeout=5.0))
            first = ids.next_id()
            ms, worker, seq = parse_id(first)
            print(f"id {first}: unix ms {ms}, worker {worker}, sequence {seq}")
            count = 100_000
            start = time.perf_counter()
            batch = [ids.next_id() for _ in range(count)]
            took = time.perf_counter() - start
            assert batch == sorted(batch) and len(set(batch)) == count
            print(f"{count} ids in {took:.3f} s: {took / count * 1e6:.2f} µs each, "
                  f"{count / took:,.0f} per second")
            print("workers registered:", zk.get_children("/services/orders/id-workers"))
        finally:
            zk.close()
            server.stop()


if __name__ == "__main__":
    main()
