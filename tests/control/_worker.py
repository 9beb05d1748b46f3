"""One process of a fleet for tests/control/test_fleet.py (run as a script).

Usage: python _worker.py ZK_HOSTS SERVICE MEMCACHED_ADDRESS

Starts a control agent and a memcached client, then calls memcached every 10 ms and
prints one JSON line per event on stdout: ``ready``; ``applied`` (version, settings,
wall time) from the agent's on_apply hook; ``tick`` every 200 ms (agent age, breaker
state, default timeout, calls, errors, slowest call since the last tick). Ends when
stdin is closed, or after 120 s whatever happens.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from resilience.clients.memcache import Memcache
from resilience.clients.zookeeper import ZooKeeper
from resilience.control import ControlAgent

_out = threading.Lock()


def emit(kind: str, **fields: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps({"kind": kind, "t": time.time(), **fields}) + "\n")
        sys.stdout.flush()


def main() -> None:
    hosts, service, address = sys.argv[1:4]
    done = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    cache = Memcache([address], timeout=0.1, connect_timeout=0.1, retry_attempts=1,
                     environ={})
    zk = ZooKeeper(hosts, timeout=0.5, connect_timeout=2.0, session_timeout=10.0, environ={})
    agent = ControlAgent(zk, service, poll_interval=0.2, clients=lambda: [cache],
                         on_apply=lambda a: emit("applied", version=a.version,
                                                 settings=a.settings))
    agent.start()
    emit("ready")
    endpoint = cache.endpoints[0]
    calls = errors = 0
    slowest = 0.0
    next_tick = time.monotonic() + 0.2
    stop_at = time.monotonic() + 120.0
    while not done.is_set() and time.monotonic() < stop_at:
        began = time.monotonic()
        try:
            cache.get("fleet")
        except Exception:
            errors += 1
        calls += 1
        slowest = max(slowest, time.monotonic() - began)
        if time.monotonic() >= next_tick:
            emit("tick", age=agent.age(), state=cache.breaker(endpoint).state(
                time.monotonic()).value, timeout=cache.options.timeout, calls=calls,
                errors=errors, slowest=slowest, version=agent.version)
            calls = errors = 0
            slowest = 0.0
            next_tick += 0.2
        done.wait(0.01)
    agent.close()
    zk.close()
    cache.close()


if __name__ == "__main__":
    main()
