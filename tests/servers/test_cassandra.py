"""Cassandra 5.0 as a real server, seen through cassandra-driver.

The tests that need the server share the session's node (``real_server("cassandra")``):
one JVM per test session. The freeze test thaws it and the restart test leaves it
running, on the same ports, so later users see a healthy node. They skip when Cassandra
or cassandra-driver is not installed, unless ``RESILIENCE_REQUIRE_SERVERS`` names it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from resilience.servers import cassandra
from resilience.servers._base import Cluster, NotInstalledError, Server, ServerError
from resilience.servers.cassandra._node import MAIN_CLASS
from resilience.testing._server_fixtures import require_driver, require_installed

pytestmark = [pytest.mark.servers("cassandra"), pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def driver() -> ModuleType:
    """cassandra.cluster; skips the module's tests without it, or fails them when
    RESILIENCE_REQUIRE_SERVERS requires cassandra (an importorskip would always skip)."""
    return require_driver("cassandra", "cassandra.cluster")


@pytest.fixture(scope="module")
def node(real_server: Callable[[str], Server | Cluster]) -> cassandra.Cassandra:
    server = real_server("cassandra")
    assert isinstance(server, cassandra.Cassandra)
    return server


def _session(server: cassandra.Cassandra) -> tuple[Any, Any]:
    """A fresh driver Cluster and Session on ``server``."""
    cl = server.driver_cluster(timeout=5.0)
    return cl, cl.connect()


@pytest.fixture
def session(node: cassandra.Cassandra) -> Iterator[Any]:
    cl, sess = _session(node)
    yield sess
    cl.shutdown()


def _table(sess: Any) -> str:
    """Create a fresh keyspace and table; return ``keyspace.table``."""
    ks = "t_" + uuid.uuid4().hex[:12]
    sess.execute(
        f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', "
        "'replication_factor': 1}",
        timeout=30,
    )
    sess.execute(f"CREATE TABLE {ks}.kv (k text PRIMARY KEY, v int)", timeout=30)
    return f"{ks}.kv"


def test_keyspace_table_insert_and_select_round_trip(session: Any) -> None:
    """A row inserted into a new keyspace's table is read back as written."""
    table = _table(session)
    session.execute(f"INSERT INTO {table} (k, v) VALUES (%s, %s)", ("a", 1), timeout=5)
    row = session.execute(f"SELECT v FROM {table} WHERE k = %s", ("a",), timeout=5).one()
    assert row is not None and row.v == 1


def test_probe_reports_the_release_version(node: cassandra.Cassandra) -> None:
    """The readiness probe reads Cassandra's own release_version, a 5.0.x release."""
    assert node.probe(5.0)
    assert (node.release_version(5.0) or "").startswith("5.0.")


def test_frozen_server_times_out_then_answers_after_thaw(
    node: cassandra.Cassandra, session: Any
) -> None:
    """While frozen a query with a 0.5 s timeout fails fast; after thaw it succeeds again."""
    from cassandra import OperationTimedOut
    from cassandra.cluster import NoHostAvailable

    table = _table(session)
    session.execute(f"INSERT INTO {table} (k, v) VALUES ('f', 7)", timeout=5)
    with node.frozen_for():
        started = time.monotonic()
        with pytest.raises((OperationTimedOut, NoHostAvailable)):
            session.execute(f"SELECT v FROM {table} WHERE k = 'f'", timeout=0.5)
        assert time.monotonic() - started < 5.0  # the raw driver waits 10 s by default
    row = session.execute(f"SELECT v FROM {table} WHERE k = 'f'", timeout=5).one()
    assert row is not None and row.v == 7


def test_killed_server_restarts_on_same_ports_with_its_data(
    node: cassandra.Cassandra, session: Any
) -> None:
    """After SIGKILL and a restart, the node listens on the same ports and still has the row."""
    table = _table(session)
    session.execute(f"INSERT INTO {table} (k, v) VALUES ('r', 42)", timeout=5)
    ports, pid = dict(node.ports), node.pid
    assert pid is not None
    node.kill()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    node.start(cassandra.SPEC.start_timeout)
    assert node.ports == ports
    cl, fresh = _session(node)
    try:
        row = fresh.execute(f"SELECT v FROM {table} WHERE k = 'r'", timeout=10).one()
    finally:
        cl.shutdown()
    assert row is not None and row.v == 42


def test_bad_config_fails_start_with_log_tail(tmp_path: Path) -> None:
    """A node whose config Cassandra rejects raises ServerError naming it, with the log tail."""
    require_installed("cassandra")
    server = cassandra.Cassandra(tmp_path, name="cassandra-bad", yaml={"num_tokens": "many"})
    with pytest.raises(ServerError) as info:
        server.start(60)
    assert not server.is_running()
    message = str(info.value)
    assert "cassandra-bad" in message and "num_tokens" in message
    assert "CassandraDaemon" in message  # the exact command is part of the error


def test_missing_jars_raise_not_installed_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the jar cache, start() fails at once with the install command in the message."""
    monkeypatch.setenv("RESILIENCE_HOME", str(tmp_path / "empty-home"))
    assert not cassandra.is_installed()
    with pytest.raises(NotInstalledError) as info:
        cassandra.Cassandra(tmp_path / "node").start(5)
    assert "resilience servers install cassandra" in str(info.value)


def test_host_and_netns_reach_the_config_and_the_command(tmp_path: Path) -> None:
    """Cassandra(host=, netns=) listens, serves CQL and seeds itself on ``host``, and its
    JVM is launched under ``ip netns exec NAME``."""
    require_installed("cassandra")
    server = cassandra.Cassandra(tmp_path, host="10.200.0.2", netns="res-test-1")
    cfg = server.config()
    assert cfg["listen_address"] == cfg["rpc_address"] == "10.200.0.2"
    assert f'seeds: "10.200.0.2:{server.ports["storage"]}"' in cfg["seed_provider"]
    command = server.launch_command()
    assert command[:4] == ["ip", "netns", "exec", "res-test-1"]
    assert command[-1] == MAIN_CLASS


def test_heap_below_minimum_is_rejected_by_name(tmp_path: Path) -> None:
    """A heap under 256 MB is refused with an error naming heap_mb."""
    with pytest.raises(ValueError, match="heap_mb"):
        cassandra.Cassandra(tmp_path, heap_mb=64)


def test_ring_tokens_split_the_murmur3_range_evenly() -> None:
    """N ring tokens start at the range's minimum and are 2**64 / N apart."""
    assert cassandra.tokens(4) == [-(2**63), -(2**62), 0, 2**62]
    assert cassandra.tokens(1) == [-(2**63)]


def test_ring_of_zero_nodes_is_rejected(tmp_path: Path) -> None:
    """A ring needs at least one node; zero is refused naming ``nodes``."""
    with pytest.raises(ValueError, match="nodes"):
        cassandra.ring(tmp_path, nodes=0)


def test_install_is_idempotent_when_installed() -> None:
    """A second install finds the completed jar cache and does no work."""
    require_installed("cassandra")
    started = time.monotonic()
    assert "already installed" in cassandra.install()
    assert time.monotonic() - started < 10.0


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cassandra.CassandraRing]:
    require_installed("cassandra")
    nodes = cassandra.ring(tmp_path_factory.mktemp("cassandra-ring"), nodes=2)
    try:
        nodes.start()
    except ServerError as exc:
        pytest.fail(f"cassandra ring did not start:\n{exc}", pytrace=False)
    yield nodes
    nodes.stop()


def test_ring_nodes_see_each_other_on_one_address(two_nodes: cassandra.CassandraRing) -> None:
    """Two nodes on 127.0.0.1 with their own ports form one ring the driver sees whole."""
    cl = two_nodes.driver_cluster(timeout=5.0)
    try:
        cl.connect()
        hosts = {(h.endpoint.address, h.endpoint.port) for h in cl.metadata.all_hosts()}
    finally:
        cl.shutdown()
    assert hosts == set(two_nodes.endpoints)


def test_ring_survives_one_frozen_node_at_consistency_one(
    two_nodes: cassandra.CassandraRing, driver: ModuleType
) -> None:
    """With one of two replicas frozen, ONE still reads through the other node; ALL fails."""
    from cassandra import ConsistencyLevel, OperationTimedOut, ReadTimeout, Unavailable
    from cassandra.policies import HostFilterPolicy, RoundRobinPolicy
    from cassandra.query import SimpleStatement

    healthy, frozen = two_nodes.members
    only_healthy = driver.ExecutionProfile(
        load_balancing_policy=HostFilterPolicy(
            RoundRobinPolicy(), lambda host: host.endpoint.port == healthy.port
        ),
        request_timeout=5.0,
    )
    cl = healthy.driver_cluster(
        timeout=5.0, execution_profiles={driver.EXEC_PROFILE_DEFAULT: only_healthy}
    )
    try:
        sess = cl.connect()
        ks = "r_" + uuid.uuid4().hex[:12]
        sess.execute(
            f"CREATE KEYSPACE {ks} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 2}",
            timeout=30,
        )
        sess.execute(f"CREATE TABLE {ks}.kv (k text PRIMARY KEY, v int)", timeout=30)
        write = SimpleStatement(
            f"INSERT INTO {ks}.kv (k, v) VALUES ('n', 5)", consistency_level=ConsistencyLevel.ALL
        )
        sess.execute(write, timeout=10)
        read = f"SELECT v FROM {ks}.kv WHERE k = 'n'"
        with frozen.frozen_for():
            one = SimpleStatement(read, consistency_level=ConsistencyLevel.ONE)
            row = sess.execute(one, timeout=5).one()
            assert row is not None and row.v == 5
            every = SimpleStatement(read, consistency_level=ConsistencyLevel.ALL)
            with pytest.raises((OperationTimedOut, ReadTimeout, Unavailable)):
                sess.execute(every, timeout=1.0)
    finally:
        cl.shutdown()
