"""The asyncio NSQ publisher: the same failover and envelope, never blocking the loop.

::

    pub = AsyncPublisher(["127.0.0.1:4150", "10.0.0.2:4150"], timeout=0.2, keys=True)
    key = await pub.publish("orders", b"...")
    await pub.aclose()

It speaks the nsqd protocol on asyncio streams (``_aio``) on the caller's running loop;
one instance belongs to the loop that first uses it. See docs/nsq.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from resilience.clients.nsq._aio import AHttp, APool
from resilience.clients.nsq._common import PublisherBase, Request
from resilience.clients.nsq._probe import aprobe
from resilience.clients.nsq._proto import ProtocolError
from resilience.core.deadline import deadline
from resilience.errors import ResilienceError

__all__ = ["AsyncPublisher"]

Driver = tuple[APool | AHttp, ...]


class AsyncPublisher(PublisherBase[Driver]):
    """The asyncio :class:`~resilience.clients.nsq.Publisher`: same arguments, same
    outcomes; ``await publish(...)``, ``await aclose()`` or ``async with``."""

    def _build_driver(self) -> Driver:
        if self._http:
            return tuple(AHttp(a) for a in self._endpoints)
        return tuple(APool(a, self.options.pool_size) for a in self._endpoints)

    def _close_driver(self, driver: Driver) -> None:
        for item in driver:
            item.close()

    async def _aattempt(self, driver: Driver, index: int,
                        fn: Callable[[Any], Awaitable[Any]], remaining: float,
                        op: str) -> Any:
        async with asyncio.timeout(remaining):
            return await fn((driver[index], remaining))

    async def _ahealth_probe(self, index: int, timeout: float) -> None:
        # A connection of its own, never a pooled one (docs/nsq.md#health-probes).
        await aprobe(self._endpoints[index], self._http, timeout)

    def _send(self, req: Request) -> Callable[[Any], Awaitable[None]]:
        connect_timeout = self.options.connect_timeout

        async def tcp(arg: tuple[APool, float]) -> None:
            pool, left = arg  # a connect cut by the attempt's own budget: ConnectTimeout
            conn = await pool.checkout(min(connect_timeout, left * 0.98))
            try:
                reply = await conn.request(req.tcp)
                if reply != b"OK":
                    raise ProtocolError(f"unexpected reply {reply[:40]!r}")
            except BaseException:
                pool.discard(conn)
                raise
            pool.checkin(conn)

        async def http(arg: tuple[AHttp, float]) -> None:
            poster, left = arg
            await poster.post(req.path, req.http_body, min(connect_timeout, left * 0.98))

        return http if self._http else tcp

    async def _publish(self, op: str, req: Request, timeout: float | None) -> None:
        send = self._send(req)
        keyed = req.keyed
        last: ResilienceError | None = None
        with deadline(self.options.timeout if timeout is None else timeout):
            for index, share in self._order(keyed):
                try:
                    await self._acall(op, index, send, share)
                    return
                except ResilienceError as err:
                    last = self._failed_over(err, keyed, last)
        assert last is not None
        raise last

    async def publish(self, topic: str, body: bytes, *, key: str | None = None,
                      timeout: float | None = None) -> str | None:
        """As :meth:`Publisher.publish <resilience.clients.nsq.Publisher.publish>`."""
        req = self._request("publish", topic, [body], key)
        await self._publish("publish", req, timeout)
        return req.keys[0]

    async def mpublish(self, topic: str, bodies: list[bytes], *,
                       keys: list[str] | None = None,
                       timeout: float | None = None) -> list[str | None]:
        """As :meth:`Publisher.mpublish <resilience.clients.nsq.Publisher.mpublish>`."""
        req = self._request("mpublish", topic, list(bodies), keys)
        await self._publish("mpublish", req, timeout)
        return req.keys

    async def dpublish(self, topic: str, body: bytes, delay: float, *,
                       key: str | None = None, timeout: float | None = None) -> str | None:
        """As :meth:`Publisher.dpublish <resilience.clients.nsq.Publisher.dpublish>`."""
        req = self._request("dpublish", topic, [body], key, delay)
        await self._publish("dpublish", req, timeout)
        return req.keys[0]
