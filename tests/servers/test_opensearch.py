"""OpenSearch through opensearch-py: index and search, freeze/thaw, stop, kill, restart.

One session-scoped node (``real_server("opensearch")``) serves every test here; the tests
that stop or kill it start it again on the same ports before they end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import ConnectionTimeout

from resilience.servers._base import Cluster, Server, ServerError, ServerSpec
from resilience.servers.opensearch import DISTRIBUTION, SPEC, OpenSearchNode, cluster
from resilience.testing._server_fixtures import require_installed

from ._procs import group_members, proc_state

pytestmark = [pytest.mark.timeout(300)]

INDEX_SETTINGS = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}


def test_spec_is_registered_under_its_name() -> None:
    """The registry's spec for opensearch names the 2.19 integ-test-zip."""
    assert isinstance(SPEC, ServerSpec) and SPEC.name == "opensearch"
    assert DISTRIBUTION.artifact.endswith(":opensearch:2.19.6:zip")


def test_config_has_our_ports_and_no_security_setting(tmp_path: Path) -> None:
    """prepare() writes single-node loopback settings and no xpack setting OpenSearch lacks."""
    require_installed("opensearch")
    node = OpenSearchNode(tmp_path)
    node.prepare()
    yml = (node.node_dir / "config" / "opensearch.yml").read_text()
    assert f"http.port: {node.ports['http']}" in yml and "xpack" not in yml


def test_a_node_that_cannot_start_fails_with_the_reason_from_its_log(tmp_path: Path) -> None:
    """A bad JVM option ends start() with a ServerError quoting the JVM's complaint."""
    require_installed("opensearch")
    node = OpenSearchNode(tmp_path, jvm_options=["-XX:+NoSuchOptionHere"])
    try:
        with pytest.raises(ServerError, match="exited with status") as failed:
            node.start(60)
    finally:
        node.stop()
    assert "NoSuchOptionHere" in str(failed.value)
    assert "servers install opensearch" in str(failed.value)


@pytest.fixture
def os_node(real_server: Callable[[str], Server]) -> OpenSearchNode:
    node = real_server("opensearch")
    assert isinstance(node, OpenSearchNode)
    return node


def _new_index(client: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.indices.create(index=name, body=INDEX_SETTINGS)
    return name


def test_index_and_search_through_opensearch_py(os_node: OpenSearchNode) -> None:
    """opensearch-py indexes a document and a match query finds it; GET / names OpenSearch."""
    client = os_node.client()
    index = _new_index(client)
    client.index(index=index, id="1", body={"title": "fail fast"}, refresh=True)
    hits = client.search(index=index, body={"query": {"match": {"title": "fast"}}})["hits"]
    assert hits["total"]["value"] == 1 and hits["hits"][0]["_id"] == "1"
    assert client.info()["version"]["distribution"] == "opensearch"


def test_server_jvm_leads_the_group_and_reports_memory(os_node: OpenSearchNode) -> None:
    """The launcher execs the server JVM, so the JVM is the group leader; its RSS is reported."""
    assert os_node.jvm_pid() == os_node.pid
    assert (os_node.rss_bytes() or 0) > 50 * 2**20


def test_frozen_server_times_out_a_request_and_thawed_server_answers(
    os_node: OpenSearchNode,
) -> None:
    """While frozen a 0.5 s request raises ConnectionTimeout; after thaw it succeeds."""
    client = os_node.client()
    index = _new_index(client)
    with os_node.frozen_for():
        assert proc_state(os_node.jvm_pid() or -1) == "T"
        began = time.monotonic()
        with pytest.raises(ConnectionTimeout):
            client.count(index=index, request_timeout=0.5)
        assert time.monotonic() - began < 5.0
    assert client.count(index=index, request_timeout=10)["count"] == 0


def test_restart_keeps_the_port_and_the_index_and_stop_leaves_nothing(
    os_node: OpenSearchNode,
) -> None:
    """After stop no process of the group is left; restart serves the same index, same port."""
    client = os_node.client()
    index = _new_index(client)
    client.index(index=index, id="kept", body={"v": 1}, refresh=True)
    port, pgid = os_node.port, os_node.pid or -1
    os_node.stop()
    assert group_members(pgid) == []
    with pytest.raises(OpenSearchConnectionError) as refused:
        client.count(index=index, request_timeout=1)
    assert not isinstance(refused.value, ConnectionTimeout)  # refused, not silent
    os_node.start(SPEC.start_timeout)
    assert os_node.port == port
    assert os_node.client().get(index=index, id="kept")["_source"] == {"v": 1}


def test_killed_server_restarts_with_its_acknowledged_writes(os_node: OpenSearchNode) -> None:
    """A SIGKILLed node restarts on the same port and still has a refreshed document."""
    client = os_node.client()
    index = _new_index(client)
    client.index(index=index, id="durable", body={"v": 2}, refresh=True)
    os_node.kill()
    assert not os_node.is_running()
    os_node.start(SPEC.start_timeout)
    assert os_node.client().get(index=index, id="durable")["_source"] == {"v": 2}


@pytest.fixture(scope="module")
def os_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_installed("opensearch")
    nodes = cluster(tmp_path_factory.mktemp("os-cluster"), nodes=3)
    try:
        nodes.start(SPEC.start_timeout)
    except ServerError as exc:
        pytest.fail(f"opensearch cluster did not start:\n{exc}", pytrace=False)
    yield nodes
    nodes.stop()


def test_cluster_serves_through_a_survivor_when_a_node_freezes_or_dies(
    os_cluster: Cluster,
) -> None:
    """A frozen member times out while another answers; a killed one leaves data readable
    through the others, and it rejoins on restart."""
    first, second = os_cluster[0], os_cluster[1]
    assert isinstance(first, OpenSearchNode) and isinstance(second, OpenSearchNode)
    client = second.client(timeout=30)
    wait = {"request_timeout": 70}
    assert client.cluster.health(wait_for_nodes="3", timeout="30s", **wait)["number_of_nodes"] == 3
    index = f"t-{uuid.uuid4().hex[:12]}"
    body = {"settings": {"number_of_shards": 1, "number_of_replicas": 2}}
    client.indices.create(index=index, body=body)
    client.index(index=index, id="1", body={"v": 1}, refresh=True)
    client.cluster.health(index=index, wait_for_status="green", timeout="30s", **wait)
    with first.frozen_for():
        with pytest.raises(ConnectionTimeout):
            first.client().get(index=index, id="1", request_timeout=0.5)
        # its own copy, so the read does not wait on the frozen member
        assert client.get(index=index, id="1", preference="_local")["_source"] == {"v": 1}
    first.kill()
    health = client.cluster.health(
        wait_for_nodes="2", wait_for_status="yellow", timeout="60s", **wait
    )
    assert health["number_of_nodes"] == 2
    assert client.get(index=index, id="1")["_source"] == {"v": 1}
    first.start(SPEC.start_timeout)
    health = client.cluster.health(wait_for_nodes="3", timeout="60s", **wait)
    assert health["number_of_nodes"] == 3
