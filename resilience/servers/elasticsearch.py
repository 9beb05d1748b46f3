"""Elasticsearch 8.19 from its Maven Central integ-test-zip, probed with elasticsearch-py.

The integ-test-zip holds the real launcher and server with four modules (transport-netty4,
x-pack-core, x-pack-security, apm): index, get and search work; ``GET /`` does not (no
rest-root module: ``info()`` gets a 405), so readiness is
``GET /_cluster/health?wait_for_status=yellow``. Security is switched off (plain HTTP,
no passwords). The launcher is a small JVM (the CLI) that starts the server JVM as its
child; both share one process group, so stop/freeze/kill reach both. Version 8.19 matches
the elasticsearch-py 8 client this project pins (it refuses a server that is not
Elasticsearch, and an 8 client talks to an 8 or 9 server).

Example::

    node = ElasticsearchNode(tmp_path).start(timeout=120)
    es = node.client(request_timeout=2)
    es.index(index="docs", id="1", document={"title": "hi"}, refresh=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilience.servers._base import Cluster, ServerSpec
from resilience.servers._search_common import SearchNode, search_cluster
from resilience.servers._search_install import Distribution

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = ["DISTRIBUTION", "SPEC", "ElasticsearchNode", "cluster", "install", "is_installed"]

VERSION = "8.19.3"

DISTRIBUTION = Distribution(
    name="elasticsearch",
    group="org.elasticsearch.distribution.integ-test-zip",
    version=VERSION,
    env_prefix="ES",
    main_class="org.elasticsearch.bootstrap.Elasticsearch",
    sha256="c4b08b70523700efde9f3e4c9287229f085c2c0db1efca5c6a7d65abbdb9f2e1",
    initial_masters_setting="cluster.initial_master_nodes",
    settings=("xpack.security.enabled: false",),
)


class ElasticsearchNode(SearchNode):
    """A single-node Elasticsearch on loopback; see :class:`SearchNode` for the arguments."""

    dist = DISTRIBUTION

    def client(self, request_timeout: float = 5.0, **kwargs: Any) -> Elasticsearch:
        """An elasticsearch-py client of this node with its retries off.

        Args:
            request_timeout: seconds for each request (connect and read).
            kwargs: more ``Elasticsearch(...)`` arguments.
        """
        from elasticsearch import Elasticsearch

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("retry_on_timeout", False)
        return Elasticsearch(self.url, request_timeout=request_timeout, **kwargs)

    def probe(self, timeout: float) -> bool:
        """Cluster health reaches yellow within ``timeout`` s, asked through elasticsearch-py."""
        from elastic_transport import TransportError
        from elasticsearch import ApiError

        with self.client(request_timeout=timeout) as es:
            wait_ms = max(10, int(timeout * 1000) - 100)
            try:
                health = es.cluster.health(wait_for_status="yellow", timeout=f"{wait_ms}ms")
            except (TransportError, ApiError):  # refused, timed out, 503 while starting
                return False
            return health.get("timed_out") is False


def cluster(data_dir: Path, nodes: int = 3, heap_mb: int = 256) -> Cluster:
    """``nodes`` master-eligible ElasticsearchNodes forming one cluster, not started."""
    return search_cluster(ElasticsearchNode, data_dir, nodes, heap_mb)


def is_installed() -> bool:
    """True when the distribution is unpacked and Java 17 is present."""
    return DISTRIBUTION.is_installed()


def install() -> str:
    """Fetch and unpack Elasticsearch (and Java 17, Maven, the run user); idempotent."""
    return DISTRIBUTION.install()


def _create(work_dir: Path) -> ElasticsearchNode:
    return ElasticsearchNode(work_dir)


SPEC = ServerSpec(
    name="elasticsearch",
    description=f"Elasticsearch {VERSION} (Maven Central integ-test-zip) on Java 17",
    install=install,
    is_installed=is_installed,
    create=_create,
    start_timeout=120.0,
)
