"""Fixtures of the fault tests: a loopback echo server and a proxy in front of it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from resilience.faults.proxy import FaultProxy

from ._echo import EchoServer


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.address, seed=7) as p:
        yield p


@pytest.fixture
def connect(proxy: FaultProxy) -> Iterator[Callable[[], socket.socket]]:
    """Open client sockets to the proxy (1 s timeout), closed at teardown."""
    socks: list[socket.socket] = []

    def open_one() -> socket.socket:
        s = socket.create_connection(proxy.address, timeout=1.0)
        socks.append(s)
        return s

    yield open_one
    for s in socks:
        s.close()
