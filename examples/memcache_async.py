"""The asyncio memcached wrapper: a frozen node fails within the budget while the event
loop keeps running other work.

Run: .venv/bin/python examples/memcache_async.py   (needs the memcached binary)
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import resilience
from resilience.clients.memcache import AsyncMemcache
from resilience.servers.memcached import Memcached


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Memcached(Path(tmp)).start()
        try:
            async with AsyncMemcache([server.address], timeout=0.05, environ={}) as cache:
                await cache.set("greeting", b"hello")
                print("get:", await cache.get("greeting"))
                ticks = 0

                async def heartbeat() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1

                beat = asyncio.create_task(heartbeat())
                server.freeze()
                for _ in range(12):
                    start = time.monotonic()
                    try:
                        await cache.get("greeting")
                    except resilience.ResilienceError as exc:
                        ms = (time.monotonic() - start) * 1000
                        print(f"{ms:7.2f} ms  {type(exc).__name__}")
                server.thaw()
                beat.cancel()
                print(f"the loop ran {ticks} heartbeats meanwhile")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
