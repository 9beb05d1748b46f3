"""Health probes of one nsqd while its breaker is open (docs/nsq.md#health-probes).

Each probe opens a connection of its own (never one of the publisher's pooled ones,
which may be stuck behind the outage), asks nsqd for the cheapest answer its port
gives, and closes it; every wait is bounded by the probe's ``timeout``:

- HTTP transport: ``GET /ping`` on the endpoint (nsqd answers ``200 OK``).
- TCP transport: the endpoint is the TCP port, whose HTTP twin is not known (it is
  configured separately, and often not the port plus one), and the TCP listener is
  what publishes use: the protocol magic and ``IDENTIFY {}`` (nsqd answers ``OK``
  without feature negotiation; it queues nothing, subscribes to nothing).

No user traffic: nothing is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

from resilience.clients.nsq._aio import AConn, aconnect, http_get
from resilience.clients.nsq._proto import FrameError, ProtocolError, http_complete
from resilience.clients.nsq._syncio import TcpConn, connect

__all__ = ["IDENTIFY", "aprobe", "probe"]

_monotonic = time.monotonic

IDENTIFY = b"IDENTIFY\n" + struct.pack(">l", 2) + b"{}"
"""``IDENTIFY`` with an empty JSON body: nsqd answers ``OK`` and changes nothing."""


def _ping_request(address: str) -> bytes:
    return (b"GET /ping HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % address.encode())


def _check_ping(raw: bytes, address: str) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"200" or body.strip() != b"OK":
        raise FrameError(f"nsqd {address} /ping: {raw[:60]!r}")


def probe(address: str, http: bool, timeout: float) -> None:
    """Return once nsqd at ``address`` answered (within ``timeout``); raise otherwise."""
    until = _monotonic() + timeout
    sock = connect(address, timeout)
    try:
        if not http:
            reply = TcpConn(sock).request(IDENTIFY, until)
            if reply != b"OK":
                raise ProtocolError(f"IDENTIFY: unexpected reply {reply[:40]!r}")
            return
        sock.settimeout(max(until - _monotonic(), 0.001))
        sock.sendall(_ping_request(address))
        raw = bytearray()
        while not http_complete(raw):
            left = until - _monotonic()
            if left <= 0:
                raise TimeoutError(f"nsqd {address} /ping: no answer in time")
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
        _check_ping(bytes(raw), address)
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


async def aprobe(address: str, http: bool, timeout: float) -> None:
    """:func:`probe` for asyncio (the whole probe under ``asyncio.timeout``)."""
    if http:
        body = await http_get(address, "/ping", timeout)
        if body.strip() != b"OK":
            raise FrameError(f"nsqd {address} /ping: {body[:40]!r}")
        return
    async with asyncio.timeout(timeout):
        conn = AConn(*await aconnect(address, timeout))
        try:
            reply = await conn.request(IDENTIFY)
        finally:
            conn.close()
    if reply != b"OK":
        raise ProtocolError(f"IDENTIFY: unexpected reply {reply[:40]!r}")
