"""OpenSearch 2.19 from its Maven Central integ-test-zip, probed with opensearch-py.

The integ-test-zip holds the real launcher and server with one module
(transport-netty4): index, get, search and ``GET /`` work; there is no security plugin,
so plain HTTP. The launcher is a shell script that runs a few short JVMs (version check,
JVM options) and then ``exec``s the server JVM, which leads the process group. Like
Elasticsearch it refuses root, so it runs as the same unprivileged user (see
:mod:`resilience.servers._search_common`). 2.19 is the last line that runs on Java 17.

Example::

    node = OpenSearchNode(tmp_path).start(timeout=120)
    client = node.client(timeout=2)
    client.index(index="docs", id="1", body={"title": "hi"}, refresh=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilience.servers._base import Cluster, ServerSpec
from resilience.servers._search_common import SearchNode, search_cluster
from resilience.servers._search_install import Distribution

__all__ = ["DISTRIBUTION", "SPEC", "OpenSearchNode", "cluster", "install", "is_installed"]

VERSION = "2.19.6"

DISTRIBUTION = Distribution(
    name="opensearch",
    group="org.opensearch.distribution.integ-test-zip",
    version=VERSION,
    env_prefix="OPENSEARCH",
    main_class="org.opensearch.bootstrap.OpenSearch",
    sha256="71d6d8b1c637f3faecda0752b184b1cc526fc6eaad59ec1408c6327bb00b9293",
    initial_masters_setting="cluster.initial_cluster_manager_nodes",
)


class OpenSearchNode(SearchNode):
    """A single-node OpenSearch on loopback; see :class:`SearchNode` for the arguments."""

    dist = DISTRIBUTION

    def client(self, timeout: float = 5.0, **kwargs: Any) -> Any:
        """An opensearch-py ``OpenSearch`` client of this node with its retries off.

        opensearch-py retries a connect timeout even with ``retry_on_timeout=False``,
        so ``max_retries=0`` is the default here.

        Args:
            timeout: seconds for each request.
            kwargs: more ``OpenSearch(...)`` arguments.
        """
        from opensearchpy import OpenSearch

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("retry_on_timeout", False)
        hosts = [{"host": self.host, "port": self.port}]
        return OpenSearch(hosts=hosts, timeout=timeout, **kwargs)

    def probe(self, timeout: float) -> bool:
        """Cluster health reaches yellow within ``timeout`` s, asked through opensearch-py."""
        from opensearchpy.exceptions import OpenSearchException

        client = self.client(timeout=timeout)
        try:
            wait_ms = max(10, int(timeout * 1000) - 100)
            # opensearch-py reads `timeout` as the request timeout unless `request_timeout`
            # is given too; only then does it reach the server as the health wait.
            health = client.cluster.health(
                wait_for_status="yellow", timeout=f"{wait_ms}ms", request_timeout=timeout
            )
        except OpenSearchException:  # refused, timed out, 503 while starting
            return False
        finally:
            client.close()
        return health.get("timed_out") is False


def cluster(data_dir: Path, nodes: int = 3, heap_mb: int = 256) -> Cluster:
    """``nodes`` master-eligible OpenSearchNodes forming one cluster, not started."""
    return search_cluster(OpenSearchNode, data_dir, nodes, heap_mb)


def is_installed() -> bool:
    """True when the distribution is unpacked and Java 17 is present."""
    return DISTRIBUTION.is_installed()


def install() -> str:
    """Fetch and unpack OpenSearch (and Java 17, Maven, the run user); idempotent."""
    return DISTRIBUTION.install()


def _create(work_dir: Path) -> OpenSearchNode:
    return OpenSearchNode(work_dir)


SPEC = ServerSpec(
    name="opensearch",
    description=f"OpenSearch {VERSION} (Maven Central integ-test-zip) on Java 17",
    install=install,
    is_installed=is_installed,
    create=_create,
    start_timeout=120.0,
)
