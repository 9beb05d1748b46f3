"""The memcached wrapper in a few lines: a real local memcached, a frozen one, a deadline.

Run: .venv/bin/python examples/memcache_basic.py   (needs the memcached binary)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import resilience
from resilience.clients.memcache import Memcache
from resilience.servers.memcached import Memcached


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Memcached(Path(tmp)).start()
        try:
            cache = Memcache([server.address], timeout=0.05, environ={})  # opens nothing
            print("set:", cache.set("greeting", b"hello"))  # acknowledged by the server
            print("get:", cache.get("greeting"))
            with resilience.deadline(0.01):  # an outer budget only ever shrinks
                print("get under a 10 ms deadline:", cache.get("greeting"))

            server.freeze()  # the process hangs; the kernel still accepts connections
            for _ in range(12):
                start = time.monotonic()
                try:
                    cache.get("greeting")
                except resilience.ResilienceError as exc:
                    ms = (time.monotonic() - start) * 1000
                    print(f"{ms:7.2f} ms  {type(exc).__name__}")
            server.thaw()
            time.sleep(1.2)  # the breaker's open interval; the next call is the probe
            print("after thaw:", cache.get("greeting"))
            cache.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
