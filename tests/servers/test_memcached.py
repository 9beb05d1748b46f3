"""memcached through pymemcache: one node, three nodes, freeze/thaw, restart, errors."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from resilience.servers._base import Cluster, ServerError
from resilience.servers.memcached import Memcached

TIMEOUT = 0.5  # generous for loopback, tiny next to pymemcache's default of no timeout


def _client(server: Memcached) -> Client:
    return Client((server.host, server.port), connect_timeout=TIMEOUT, timeout=TIMEOUT)


def test_set_and_get_on_one_node(memcached: Memcached) -> None:
    """pymemcache stores and reads back a value on a fresh node."""
    client = _client(memcached)
    try:
        assert client.set("k", b"v", noreply=False)
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_set_and_get_across_three_nodes(memcached_cluster: Cluster) -> None:
    """A HashClient spreads keys over three nodes and reads every one back."""
    nodes = [(m.host, m.port) for m in memcached_cluster]
    client = HashClient(nodes, connect_timeout=TIMEOUT, timeout=TIMEOUT, ignore_exc=False)
    try:
        for i in range(60):
            assert client.set(f"key{i}", str(i).encode(), noreply=False)
        assert all(client.get(f"key{i}") == str(i).encode() for i in range(60))
        # every node got a share: the three are really separate servers
        per_node = [_client(m).stats()[b"curr_items"] for m in memcached_cluster]  # type: ignore[arg-type]
        assert all(n > 0 for n in per_node) and sum(per_node) == 60
    finally:
        client.close()


def test_frozen_node_times_out_and_thawed_node_answers(memcached: Memcached) -> None:
    """While frozen a get times out at the socket timeout; after thaw it works again."""
    client = _client(memcached)
    try:
        client.set("k", b"v", noreply=False)
        with memcached.frozen_for():
            t0 = time.monotonic()
            with pytest.raises((socket.timeout, TimeoutError)):
                client.get("k")
            assert time.monotonic() - t0 < 3 * TIMEOUT
        client.close()  # the timed-out connection may hold a half-read reply
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_restart_keeps_the_port_and_loses_the_cache(memcached: Memcached) -> None:
    """After restart() the node answers on the same port, empty (memcached keeps no data)."""
    port = memcached.port
    client = _client(memcached)
    try:
        client.set("k", b"v", noreply=False)
        memcached.restart(5)
        assert memcached.port == port
        client.close()
        assert client.get("k") is None
        assert client.set("k", b"w", noreply=False)
    finally:
        client.close()


def test_killed_node_refuses_connections(memcached: Memcached) -> None:
    """After kill() a new connection is refused at once."""
    memcached.kill()
    assert not memcached.is_running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((memcached.host, memcached.port), timeout=1).close()


def test_port_taken_raises_server_error_naming_the_port(tmp_path: Path) -> None:
    """Starting on a port someone listens on fails at once with ServerError naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        clash = Memcached(tmp_path / "clash", port=port, name="memcached-clash")
        with pytest.raises(ServerError, match=f"port already in use on 127.0.0.1: client={port}"):
            clash.start(5)
    assert not clash.is_running()


def test_bad_option_raises_server_error_with_memcached_log(tmp_path: Path) -> None:
    """A memcached that rejects its options raises ServerError with its own message and command."""
    bad = Memcached(tmp_path / "bad", threads=0, name="memcached-bad")
    with pytest.raises(ServerError) as info:
        bad.start(5)
    assert "memcached-bad: exited with status 1" in str(info.value)
    assert "-t 0" in str(info.value)
    assert "Number of threads must be greater than 0" in info.value.log_tail


def test_a_node_in_a_network_namespace_serves_on_the_namespace_address(
    server_in_netns: Any,
) -> None:
    """Memcached(host=ns_ip, netns=name) runs inside the namespace: it answers on the
    namespace's address, and nothing listens on its port on this side's loopback."""
    server, ns = server_in_netns(Memcached, start_timeout=10.0)
    assert server.host == ns.ns_ip
    assert os.readlink(f"/proc/{server.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    client = _client(server)
    try:
        assert client.set("k", b"v", noreply=False)
        assert client.get("k") == b"v"
    finally:
        client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT).close()
