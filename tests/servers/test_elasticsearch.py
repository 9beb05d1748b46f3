"""Elasticsearch through elasticsearch-py: index and search, freeze/thaw, stop, kill, restart.

One session-scoped node (``real_server("elasticsearch")``) serves every test here; the
tests that stop or kill it start it again on the same ports before they end. The first
part checks the shared install/config logic of ``_search_common`` without a server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout

from resilience.servers._base import Cluster, NotInstalledError, Server, ServerError, ServerSpec
from resilience.servers._search_common import SearchNode, _collect_orphans, _runtime_root
from resilience.servers._search_install import Distribution, _unzip
from resilience.servers.elasticsearch import DISTRIBUTION, SPEC, ElasticsearchNode, cluster
from resilience.testing._server_fixtures import require_installed

from ._procs import group_members, proc_state

pytestmark = [pytest.mark.timeout(300)]

INDEX_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0}


# --- without a server --------------------------------------------------------------------


def test_spec_is_registered_under_its_name() -> None:
    """The registry's spec for elasticsearch builds an ElasticsearchNode."""
    assert isinstance(SPEC, ServerSpec) and SPEC.name == "elasticsearch"
    assert DISTRIBUTION.artifact.endswith(":elasticsearch:8.19.3:zip")


def test_unzip_keeps_executable_bits_and_opens_everything_to_others(tmp_path: Path) -> None:
    """An executable in the zip stays executable; a 0660 file becomes readable by others."""
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, mode in (("d/bin/run", 0o755), ("d/config/secret.yml", 0o660)):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, "x")
    _unzip(archive, tmp_path / "out")
    assert (tmp_path / "out/d/bin/run").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out/d/config/secret.yml").stat().st_mode & 0o777 == 0o644


def test_start_without_the_distribution_names_the_install_command(tmp_path: Path) -> None:
    """A node of a distribution that is not unpacked fails with the install command."""
    missing = Distribution(
        name="elasticsearch",
        group="g",
        version="0.0.0-missing",
        env_prefix="ES",
        main_class="M",
        sha256="",
        initial_masters_setting="cluster.initial_master_nodes",
    )

    class Missing(SearchNode):
        dist = missing

    with pytest.raises(NotInstalledError, match="servers install elasticsearch"):
        Missing(tmp_path).prepare()


def test_bad_heap_is_refused_with_its_name(tmp_path: Path) -> None:
    """A heap below 128 MB is a ValueError naming heap_mb."""
    with pytest.raises(ValueError, match="heap_mb"):
        ElasticsearchNode(tmp_path, heap_mb=64)


def test_config_has_our_ports_and_no_relative_log_paths(tmp_path: Path) -> None:
    """prepare() writes single-node loopback settings and jvm.options without gc.log."""
    require_installed("elasticsearch")
    node = ElasticsearchNode(tmp_path, heap_mb=256)
    node.prepare()
    conf = node.node_dir / "config"
    yml = (conf / "elasticsearch.yml").read_text()
    assert f"http.port: {node.ports['http']}" in yml
    assert f"transport.port: {node.ports['transport']}" in yml
    assert "discovery.type: single-node" in yml and "xpack.security.enabled: false" in yml
    jvm = (conf / "jvm.options").read_text()
    assert "gc.log" not in jvm and "-Xmx256m" in jvm and "-XX:TieredStopAtLevel=1" in jvm


def test_host_and_netns_reach_the_config_the_url_and_the_command(tmp_path: Path) -> None:
    """A node with host=, netns= listens on ``host`` (network.host, url) and its launcher
    runs under ``ip netns exec NAME``."""
    require_installed("elasticsearch")
    node = ElasticsearchNode(tmp_path, host="10.200.0.2", netns="res-test-1")
    node.prepare()
    yml = (node.node_dir / "config" / "elasticsearch.yml").read_text()
    assert "network.host: 10.200.0.2" in yml
    assert node.url == f"http://10.200.0.2:{node.ports['http']}"
    command = node.launch_command()
    assert command[:4] == ["ip", "netns", "exec", "res-test-1"]
    assert command[-1] == str(DISTRIBUTION.launcher)


def test_orphan_runtime_dirs_go_unless_a_server_still_holds_the_lock(tmp_path: Path) -> None:
    """A runtime dir whose data_dir is gone is removed, unless its node.lock is held."""
    root = _runtime_root()
    tag = uuid.uuid4().hex[:12]
    held, free = root / f"test-held-{tag}", root / f"test-free-{tag}"
    for node in (held, free):
        (node / "data").mkdir(parents=True)
        (node / "origin").write_text(str(tmp_path / "gone"))
        (node / "data" / "node.lock").touch()
    # Another process holds the lock, as the server JVM does (POSIX locks are per process).
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(held / "data" / "node.lock")], stdout=subprocess.PIPE
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
        _collect_orphans()
        assert held.exists() and not free.exists()
    finally:
        locker.kill()
        locker.wait(5)
        shutil.rmtree(held, ignore_errors=True)


LOCKER = """
import fcntl, sys, time
fh = open(sys.argv[1], "rb+")
fcntl.lockf(fh, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(30)
"""


# --- against the session's server ----------------------------------------------------------


def test_a_node_that_cannot_start_fails_with_the_reason_from_its_log(tmp_path: Path) -> None:
    """A bad JVM option ends start() with a ServerError quoting the JVM's complaint."""
    require_installed("elasticsearch")
    node = ElasticsearchNode(tmp_path, jvm_options=["-XX:+NoSuchOptionHere"])
    try:
        with pytest.raises(ServerError, match="exited with status") as failed:
            node.start(60)
    finally:
        node.stop()
    assert "NoSuchOptionHere" in str(failed.value)
    assert "servers install elasticsearch" in str(failed.value)


@pytest.fixture
def es_node(real_server: Callable[[str], Server]) -> ElasticsearchNode:
    node = real_server("elasticsearch")
    assert isinstance(node, ElasticsearchNode)
    return node


def _new_index(node: ElasticsearchNode) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    node.client().indices.create(index=name, settings=INDEX_SETTINGS)
    return name


def test_index_and_search_through_elasticsearch_py(es_node: ElasticsearchNode) -> None:
    """elasticsearch-py indexes a document and a match query finds it."""
    es = es_node.client()
    index = _new_index(es_node)
    es.index(index=index, id="1", document={"title": "fail fast"}, refresh=True)
    hits = es.search(index=index, query={"match": {"title": "fast"}})["hits"]
    assert hits["total"]["value"] == 1 and hits["hits"][0]["_id"] == "1"


def test_server_jvm_is_a_child_of_the_launcher_and_reports_memory(
    es_node: ElasticsearchNode,
) -> None:
    """The server JVM is a separate process in the launcher's group; its RSS is reported."""
    jvm = es_node.jvm_pid()
    assert jvm is not None and jvm != es_node.pid
    assert jvm in group_members(es_node.pid or -1)
    assert (es_node.rss_bytes() or 0) > 50 * 2**20


def test_frozen_server_times_out_a_request_and_thawed_server_answers(
    es_node: ElasticsearchNode,
) -> None:
    """While frozen (JVM stopped too) a 0.5 s request times out; after thaw it succeeds."""
    es = es_node.client()
    index = _new_index(es_node)
    with es_node.frozen_for():
        assert proc_state(es_node.jvm_pid() or -1) == "T"
        began = time.monotonic()
        with pytest.raises(ConnectionTimeout):
            es.options(request_timeout=0.5).count(index=index)
        assert time.monotonic() - began < 5.0
    assert es.options(request_timeout=10).count(index=index)["count"] == 0


def test_restart_keeps_the_port_and_the_index_and_stop_leaves_nothing(
    es_node: ElasticsearchNode,
) -> None:
    """After stop no process of the group is left; restart serves the same index, same port."""
    es = es_node.client()
    index = _new_index(es_node)
    es.index(index=index, id="kept", document={"v": 1}, refresh=True)
    port, pgid = es_node.port, es_node.pid or -1
    es_node.stop()
    assert group_members(pgid) == []
    with pytest.raises(TransportConnectionError):
        es.options(request_timeout=1).count(index=index)
    es_node.start(SPEC.start_timeout)
    assert es_node.port == port
    assert es_node.client().get(index=index, id="kept")["_source"] == {"v": 1}


def test_killed_server_restarts_with_its_acknowledged_writes(es_node: ElasticsearchNode) -> None:
    """A SIGKILLed node restarts on the same port and still has a refreshed document."""
    es = es_node.client()
    index = _new_index(es_node)
    es.index(index=index, id="durable", document={"v": 2}, refresh=True)
    es_node.kill()
    assert not es_node.is_running()
    es_node.start(SPEC.start_timeout)
    assert es_node.client().get(index=index, id="durable")["_source"] == {"v": 2}


# --- a three-node cluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def es_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_installed("elasticsearch")
    nodes = cluster(tmp_path_factory.mktemp("es-cluster"), nodes=3)
    try:
        nodes.start(SPEC.start_timeout)
    except ServerError as exc:
        pytest.fail(f"elasticsearch cluster did not start:\n{exc}", pytrace=False)
    yield nodes
    nodes.stop()


def test_cluster_serves_through_a_survivor_when_a_node_freezes_or_dies(
    es_cluster: Cluster,
) -> None:
    """A frozen member times out while another answers; a killed one leaves data readable
    through the others, and it rejoins on restart."""
    first, second = es_cluster[0], es_cluster[1]
    assert isinstance(first, ElasticsearchNode) and isinstance(second, ElasticsearchNode)
    es = second.client(request_timeout=70)  # above the longest health wait below
    assert es.cluster.health(wait_for_nodes="3", timeout="30s")["number_of_nodes"] == 3
    index = f"t-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 2})
    es.index(index=index, id="1", document={"v": 1}, refresh=True)
    es.cluster.health(index=index, wait_for_status="green", timeout="30s")
    with first.frozen_for():
        with pytest.raises(ConnectionTimeout):
            first.client().options(request_timeout=0.5).get(index=index, id="1")
        # its own copy, so the read does not wait on the frozen member
        assert es.get(index=index, id="1", preference="_local")["_source"] == {"v": 1}
    first.kill()
    health = es.cluster.health(wait_for_nodes="2", wait_for_status="yellow", timeout="60s")
    assert health["number_of_nodes"] == 2
    assert es.get(index=index, id="1")["_source"] == {"v": 1}
    first.start(SPEC.start_timeout)
    assert es.cluster.health(wait_for_nodes="3", timeout="60s")["number_of_nodes"] == 3
