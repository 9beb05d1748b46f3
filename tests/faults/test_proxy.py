"""FaultProxy itself: addresses, counters, sync and async lifecycles, live toxics."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from resilience.faults.proxy import FaultProxy
from resilience.faults.toxics import Blackhole, Latency, Refuse

from ._echo import EchoServer


@pytest.mark.parametrize("upstream", ["10.1.2.3:80", "8.8.8.8:53", "example.com:80"])
def test_upstream_outside_loopback_is_rejected(upstream: str) -> None:
    with pytest.raises(ValueError, match="upstream"):
        FaultProxy(upstream)


def test_malformed_upstream_names_the_problem() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        FaultProxy("11211")
    with pytest.raises(ValueError, match="not a number"):
        FaultProxy("127.0.0.1:http")


def test_listen_must_be_loopback(echo: EchoServer) -> None:
    with pytest.raises(ValueError, match="listen"):
        FaultProxy(echo.address, listen="0.0.0.0:0")


def test_counters_count_connections_and_bytes(echo: EchoServer) -> None:
    with FaultProxy(echo.address) as p:
        with socket.create_connection(p.address, timeout=1) as s:
            s.sendall(b"12345")
            assert s.recv(10) == b"12345"
            assert p.wait_until(lambda c: c.active == 1)
        assert p.wait_until(lambda c: c.closed == 1 and c.active == 0)
        c = p.counters()
        assert (c.accepted, c.upstream_bytes, c.downstream_bytes) == (1, 5, 5)
        assert (c.upstream_forwarded, c.downstream_forwarded) == (5, 5)


def test_listen_on_a_given_port(echo: EchoServer) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with FaultProxy(echo.address, listen=f"127.0.0.1:{port}") as p:
        assert p.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"a")
            assert s.recv(1) == b"a"


def test_stop_closes_every_connection_and_the_listener_quickly(echo: EchoServer) -> None:
    p = FaultProxy(echo.address).start()
    p.add(Blackhole())
    s = socket.create_connection(p.address, timeout=2)
    s.sendall(b"x")
    assert p.wait_until(lambda c: c.active == 1)
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 1.0
    assert s.recv(1) == b""  # closed, not hung
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(p.address, timeout=1)
    s.close()


def test_upstream_down_closes_the_client_at_once() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    dead = probe.getsockname()[:2]
    probe.close()
    with FaultProxy(dead) as p, socket.create_connection(p.address, timeout=1) as s:
        assert s.recv(1) == b""


def test_remove_unknown_toxic_raises_keyerror(echo: EchoServer) -> None:
    with FaultProxy(echo.address) as p, pytest.raises(KeyError, match="nope"):
        p.remove("nope")


def test_refuse_added_before_start_refuses_from_the_first_connect(echo: EchoServer) -> None:
    p = FaultProxy(echo.address)
    p.add(Refuse())
    with p:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(p.address, timeout=1)
        p.remove("refuse_downstream")
        with socket.create_connection(p.address, timeout=1) as s:
            s.sendall(b"ok")
            assert s.recv(2) == b"ok"


async def test_async_proxy_runs_on_the_current_loop(echo: EchoServer) -> None:
    async with FaultProxy(echo.address, seed=3) as p:
        reader, writer = await asyncio.open_connection(*p.address)
        async with p.atoxic(Latency(latency_ms=100)):
            t0 = time.monotonic()
            writer.write(b"hey")
            assert await asyncio.wait_for(reader.readexactly(3), 2) == b"hey"
            assert time.monotonic() - t0 >= 0.09
        with p.toxic(Blackhole()):
            writer.write(b"gone")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(4), 0.2)
        writer.write(b"back")
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"back"
        writer.close()


async def test_sync_stop_of_an_async_proxy_says_to_use_astop(echo: EchoServer) -> None:
    async with FaultProxy(echo.address) as p:
        with pytest.raises(RuntimeError, match="astop"):
            p.stop()


def test_stop_with_connections_still_connecting_upstream_is_bounded() -> None:
    from resilience.faults.blackhole import ConnectBlackhole

    with ConnectBlackhole() as hole:
        p = FaultProxy(hole.address, connect_timeout=30).start()
        clients = [socket.create_connection(p.address, timeout=1) for _ in range(3)]
        assert p.wait_until(lambda c: c.accepted == 3)
        t0 = time.monotonic()
        p.stop()
        assert time.monotonic() - t0 < 1.0
        for c in clients:
            assert c.recv(1) == b""
            c.close()


def test_a_stopped_proxy_starts_again_on_the_same_address(echo: EchoServer) -> None:
    p = FaultProxy(echo.address).start()
    address = p.address
    p.stop()
    p.start()
    try:
        assert p.address == address
        with socket.create_connection(address, timeout=1) as s:
            s.sendall(b"again")
            assert s.recv(5) == b"again"
    finally:
        p.stop()


def test_stop_while_refusing_frees_the_port(echo: EchoServer) -> None:
    """The bound, non-listening socket a Refuse keeps is closed by stop() too."""
    p = FaultProxy(echo.address).start()
    p.add(Refuse())
    p.stop()
    with socket.socket() as s:  # no SO_REUSEADDR: fails while anything holds the port
        s.bind(p.address)


async def test_refuse_keeps_a_connection_whose_accept_is_under_way(echo: EchoServer) -> None:
    """Refuse added between the accept of a connection and its hand-over still serves it
    (the loop turns below put it exactly there with an accept task; measured reset)."""
    async with FaultProxy(echo.address) as p:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)  # the proxy is waiting for connections
        client = socket.create_connection(p.address, timeout=2)  # completed by the kernel
        client.setblocking(False)
        await asyncio.sleep(0)  # the listener reads as ready: the connection is accepted
        await asyncio.sleep(0)
        p.add(Refuse())
        try:
            await loop.sock_sendall(client, b"hi")
            assert await asyncio.wait_for(loop.sock_recv(client, 2), 2) == b"hi"
        finally:
            client.close()
