"""ConnectBlackhole: connects hang until the client's timeout, without root."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from resilience.faults.blackhole import ConnectBlackhole


def test_connect_hangs_until_the_clients_timeout() -> None:
    with ConnectBlackhole() as hole:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            socket.create_connection(hole.address, timeout=0.3)
        assert 0.25 <= time.monotonic() - t0 < 1.0


def test_every_further_connect_hangs_too() -> None:
    with ConnectBlackhole() as hole:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                socket.create_connection(hole.address, timeout=0.1)


async def test_async_connect_hangs_until_cancelled() -> None:
    with ConnectBlackhole() as hole, pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.open_connection(*hole.address), 0.2)


def test_after_stop_connects_are_refused() -> None:
    hole = ConnectBlackhole().start()
    address = hole.address
    hole.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1)


def test_non_loopback_host_is_rejected() -> None:
    with pytest.raises(ValueError, match="connect blackhole host"):
        ConnectBlackhole("192.0.2.1")
