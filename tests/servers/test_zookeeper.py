"""ZooKeeper through kazoo: standalone, ensemble with a lost member, freeze/thaw, restart."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

from resilience.servers._base import ServerError
from resilience.servers.zookeeper import ZooKeeper, ZooKeeperEnsemble, four_letter

OP_TIMEOUT = 2.0


def _connect(hosts: str) -> KazooClient:
    # kazoo retries forever by default; bound the connection attempts
    client = KazooClient(
        hosts=hosts, timeout=4.0, connection_retry={"max_tries": 20, "max_delay": 0.5}
    )
    client.start(timeout=10)
    return client


@pytest.fixture
def kazoo_client(zookeeper: ZooKeeper) -> Iterator[KazooClient]:
    client = _connect(zookeeper.address)
    yield client
    client.stop()
    client.close()


def test_create_and_get_on_standalone(kazoo_client: KazooClient) -> None:
    """kazoo creates a node and reads its data back on the session's standalone server."""
    path = f"/smoke-{uuid.uuid4().hex}"
    kazoo_client.create(path, b"v")
    assert kazoo_client.get(path)[0] == b"v"


def test_standalone_reports_its_mode(zookeeper: ZooKeeper) -> None:
    """srvr says standalone and the whitelisted four-letter words answer."""
    assert zookeeper.mode() == "standalone"
    assert four_letter(zookeeper.host, zookeeper.port, "ruok", 1.0) == "imok"


def test_frozen_server_times_out_a_call_and_thawed_server_answers(tmp_path: Path) -> None:
    """While frozen a bounded get times out; after thaw the same client reads again."""
    server = ZooKeeper(tmp_path / "zk").start(30)
    client = _connect(server.address)
    try:
        client.create("/f", b"v")
        with server.frozen_for(), pytest.raises(KazooTimeoutError):
            client.get_async("/f").get(timeout=0.5)
        # the session outlives the short freeze (session timeout 4 s)
        assert client.get_async("/f").get(timeout=OP_TIMEOUT)[0] == b"v"
    finally:
        client.stop()
        client.close()
        server.stop()


def test_restart_on_same_port_keeps_the_data(tmp_path: Path) -> None:
    """Data written before a restart is there after it, on the same port."""
    server = ZooKeeper(tmp_path / "zk").start(30)
    try:
        client = _connect(server.address)
        client.create("/durable", b"kept")
        client.stop()
        client.close()
        port = server.port
        server.restart(30)
        assert server.port == port
        client = _connect(server.address)
        assert client.get("/durable")[0] == b"kept"
        client.stop()
        client.close()
    finally:
        server.stop()


def test_ensemble_has_one_leader_and_serves_reads_and_writes(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    """The three members elect one leader, and kazoo reads and writes through the ensemble."""
    modes = sorted(m.mode() or "" for m in zookeeper_ensemble)
    assert modes == ["follower", "follower", "leader"]
    client = _connect(zookeeper_ensemble.hosts)
    try:
        path = f"/e-{uuid.uuid4().hex}"
        client.create(path, b"v")
        assert client.get(path)[0] == b"v"
    finally:
        client.stop()
        client.close()


def test_ensemble_survives_losing_its_leader(tmp_path: Path) -> None:
    """With the leader killed, the two others elect a new one and the client reads and writes."""
    from resilience.servers.zookeeper import ensemble

    with ensemble(tmp_path) as zk:
        client = _connect(zk.hosts)
        try:
            client.create("/before", b"1")
            leader = zk.leader()
            assert leader is not None
            leader.kill()
            # kazoo reconnects to a surviving member once the election is over
            retry = KazooRetry(max_tries=-1, max_delay=0.5, deadline=20)
            retry(client.create, "/after", b"2")
            assert retry(client.get, "/before")[0] == b"1"
            assert retry(client.get, "/after")[0] == b"2"
            new_leader = zk.leader()
            assert new_leader is not None and new_leader is not leader
        finally:
            client.stop()
            client.close()


def test_client_port_taken_raises_server_error(tmp_path: Path, zookeeper: ZooKeeper) -> None:
    """A second server on a taken client port fails with ServerError, not a false "ready"."""
    clash = ZooKeeper(tmp_path / "clash", port=zookeeper.port, name="zookeeper-clash")
    with pytest.raises(
        ServerError, match=f"zookeeper-clash: port already in use.*{zookeeper.port}"
    ):
        clash.start(30)
    assert not clash.is_running()


def test_broken_config_raises_server_error_with_zookeeper_log(tmp_path: Path) -> None:
    """A config ZooKeeper rejects raises ServerError with the JVM's own complaint in the tail."""

    class BadConfig(ZooKeeper):
        def prepare(self) -> None:
            super().prepare()
            with self.config_path.open("a") as cfg:
                cfg.write("tickTime=not-a-number\n")

    with pytest.raises(ServerError) as info:
        BadConfig(tmp_path / "bad", name="zookeeper-bad").start(30)
    assert "zookeeper-bad: exited with status" in str(info.value)
    assert "QuorumPeerMain" in str(info.value)
    assert "not-a-number" in info.value.log_tail


def test_a_standalone_server_in_a_network_namespace_serves_on_its_address(
    server_in_netns: Any,
) -> None:
    """ZooKeeper(host=ns_ip, netns=name) runs inside the namespace and answers srvr on the
    namespace's address; nothing listens on its port on this side's loopback."""
    server, ns = server_in_netns(ZooKeeper, start_timeout=30.0)
    assert server.host == ns.ns_ip
    assert os.readlink(f"/proc/{server.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert server.mode() == "standalone"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=OP_TIMEOUT).close()


def test_four_letter_is_bounded_in_total_even_by_a_trickling_reply() -> None:
    """A reply that trickles in without end raises TimeoutError at the timeout, although
    every single recv gets a byte well within it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):  # the client hung up: done
            while not stop.wait(0.05):
                conn.sendall(b"x")

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            four_letter("127.0.0.1", listener.getsockname()[1], "srvr", 0.3)
        assert time.monotonic() - t0 < 1.0
    finally:
        stop.set()
        feeder.join(2.0)
        listener.close()
