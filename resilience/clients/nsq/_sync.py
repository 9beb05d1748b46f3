"""The sync NSQ publisher: blocking sockets, one deadline per publish, failover.

::

    pub = Publisher(["127.0.0.1:4150", "10.0.0.2:4150"], timeout=0.2, keys=True)
    key = pub.publish("orders", b"...")    # returns once an nsqd said OK, else raises
    pub.close()

It speaks the nsqd TCP protocol itself (``_syncio``), or HTTP ``/pub`` and ``/mpub``
with ``transport="http"``: no pynsq, no tornado loop, no thread. See docs/nsq.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from resilience.clients.nsq._common import PublisherBase, Request
from resilience.clients.nsq._probe import probe
from resilience.clients.nsq._proto import ProtocolError
from resilience.clients.nsq._syncio import HttpPoster, TcpPool
from resilience.core.deadline import deadline
from resilience.errors import ResilienceError

__all__ = ["Publisher"]

_monotonic = time.monotonic
Driver = tuple[TcpPool | HttpPoster, ...]


class Publisher(PublisherBase[Driver]):
    """A publisher to one or more nsqd that returns only once a message is acknowledged.

    Args:
        nsqd: nsqd addresses, ``host:port`` (TCP ports, or HTTP ports with
            ``transport="http"``) in preferred order, as a list or comma-separated;
            ``RESILIENCE_NSQ_NSQD_TCP`` / ``_NSQD_HTTP`` when omitted.
        keys: give every message without an explicit ``key=`` a fresh idempotency key
            (a UUID), so an ambiguous outcome is retried (the consumer de-duplicates).
        name, environ, events, breakers, clock, **options: as every client
            (docs/configuration.md); options are :class:`NsqOptions` fields.

    Construction opens nothing. Every publish returns only when nsqd answered ``OK``
    within the deadline, and raises otherwise: ``CircuitOpenError`` when every nsqd's
    breaker is open, ``BackendError`` (``.ambiguous`` says whether the message may have
    been queued anyway), ``ValueError`` for a bad topic, body or key (no I/O).
    """

    def _build_driver(self) -> Driver:
        if self._http:
            return tuple(HttpPoster(a) for a in self._endpoints)
        return tuple(TcpPool(a, self.options.pool_size) for a in self._endpoints)

    def _close_driver(self, driver: Driver) -> None:
        for item in driver:
            item.close()

    def _attempt(self, driver: Driver, index: int, fn: Callable[[Any], Any],
                 remaining: float, op: str) -> Any:
        return fn((driver[index], _monotonic() + remaining))

    def _health_probe(self, index: int, timeout: float) -> None:
        # A connection of its own, never a pooled one (docs/nsq.md#health-probes).
        probe(self._endpoints[index], self._http, timeout)

    def _send(self, req: Request) -> Callable[[Any], None]:
        connect_timeout = self.options.connect_timeout

        def tcp(arg: tuple[TcpPool, float]) -> None:
            pool, until = arg
            conn = pool.checkout(until, connect_timeout)
            try:
                reply = conn.request(req.tcp, until)
                if reply != b"OK":
                    raise ProtocolError(f"unexpected reply {reply[:40]!r}")
            except BaseException:
                pool.discard(conn)
                raise
            pool.checkin(conn)

        def http(arg: tuple[HttpPoster, float]) -> None:
            poster, until = arg
            poster.post(req.path, req.http_body, until, connect_timeout)

        return http if self._http else tcp

    def _publish(self, op: str, req: Request, timeout: float | None) -> None:
        send = self._send(req)
        keyed = req.keyed
        last: ResilienceError | None = None
        with deadline(self.options.timeout if timeout is None else timeout):
            for index, share in self._order(keyed):
                try:
                    self._call(op, index, send, share)
                    return
                except ResilienceError as err:
                    last = self._failed_over(err, keyed, last)
        assert last is not None
        raise last

    # ---- operations --------------------------------------------------------------

    def publish(self, topic: str, body: bytes, *, key: str | None = None,
                timeout: float | None = None) -> str | None:
        """Publish ``body`` to ``topic``; return its idempotency key (None if unkeyed)
        once an nsqd acknowledged it."""
        req = self._request("publish", topic, [body], key)
        self._publish("publish", req, timeout)
        return req.keys[0]

    def mpublish(self, topic: str, bodies: list[bytes], *, keys: list[str] | None = None,
                 timeout: float | None = None) -> list[str | None]:
        """Publish ``bodies`` atomically to one nsqd (all or none); return their keys."""
        req = self._request("mpublish", topic, list(bodies), keys)
        self._publish("mpublish", req, timeout)
        return req.keys

    def dpublish(self, topic: str, body: bytes, delay: float, *, key: str | None = None,
                 timeout: float | None = None) -> str | None:
        """Publish ``body`` for delivery no sooner than ``delay`` seconds (0..3600)."""
        req = self._request("dpublish", topic, [body], key, delay)
        self._publish("dpublish", req, timeout)
        return req.keys[0]
