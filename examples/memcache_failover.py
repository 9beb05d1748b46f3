"""Three memcached nodes, one frozen: its keys fail fast (or read as misses with
fail_open) while the other two keep serving at normal speed.

Run: .venv/bin/python examples/memcache_failover.py   (needs the memcached binary)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from resilience.clients.memcache import Memcache
from resilience.servers.memcached import cluster


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = cluster(Path(tmp), 3).start()
        try:
            cache = Memcache(nodes.addresses, timeout=0.05, fail_open=True, environ={})
            keys = [f"user:{i}" for i in range(9)]
            cache.set_many({k: k.encode() for k in keys})
            frozen = nodes.members[0]
            frozen.freeze()
            for round_ in range(12):
                start = time.monotonic()
                found = cache.get_many(keys)
                ms = (time.monotonic() - start) * 1000
                print(f"round {round_}: {len(found)}/{len(keys)} keys in {ms:.1f} ms")
            states = {a: cache.breaker(a).state(time.monotonic()).value for a in nodes.addresses}
            print("breakers:", states)
            frozen.thaw()
            cache.close()
        finally:
            nodes.stop()


if __name__ == "__main__":
    main()
