"""Fixtures of the search client tests: Elasticsearch and OpenSearch, real servers.

Every test that takes ``driver`` runs once per driver (``elasticsearch``,
``opensearch``). The servers are started once per session (two JVMs); a second server
of each driver inside a network namespace, also once per session, is the target of the
firewall faults and the second node of the per-node breaker tests (two single-node
clusters behind one client). ``make_client`` builds the wrapper (sync, or async behind
the same blocking interface) with fast-reacting test settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience.testing._fault_fixtures import require_netns
from resilience.testing._server_fixtures import require_driver, require_installed

from .._blocking import Blocking, blocking_factory

INDEX = "docs"
DOC = {"title": "x" * 400, "n": 1}  # long: a reply that trickles in takes seconds

FAST: dict[str, Any] = {
    "timeout": 0.1,
    "connect_timeout": 0.1,
    "breaker_slow_call_duration": 2.0,
    "breaker_minimum_calls": 4,
    "breaker_window_size": 4,
    "breaker_open_duration": 0.2,
    "breaker_max_open_duration": 0.2,
    "breaker_jitter": 0.0,
    "environ": {},
}
BUDGET = 0.1

MODULES = {"elasticsearch": "elasticsearch", "opensearch": "opensearchpy"}


def wrapper_classes(driver: str) -> tuple[type[Any], type[Any]]:
    """(sync class, async class) of the wrapper for ``driver``."""
    if driver == "elasticsearch":
        from resilience.clients.elasticsearch import AsyncElasticsearch, Elasticsearch

        return Elasticsearch, AsyncElasticsearch
    from resilience.clients.opensearch import AsyncOpenSearch, OpenSearch

    return OpenSearch, AsyncOpenSearch


def body_kw(driver: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The document keyword of each driver: ``document=`` or ``body=``."""
    return {"document": doc} if driver == "elasticsearch" else {"body": doc}


def raw_client(driver: str, url: str, **kwargs: Any) -> Any:
    """The raw driver client, as its users build it."""
    if driver == "elasticsearch":
        from elasticsearch import Elasticsearch

        return Elasticsearch(url, **kwargs)
    from opensearchpy import OpenSearch

    return OpenSearch(url, **kwargs)


def seed(driver: str, url: str) -> None:
    """Create the test index (no replicas: a single node stays green) and document 1."""
    raw = raw_client(driver, url, request_timeout=30)
    try:
        if not raw.indices.exists(index=INDEX):
            settings = {"number_of_replicas": 0, "number_of_shards": 1}
            if driver == "elasticsearch":
                raw.indices.create(index=INDEX, settings=settings)
            else:
                raw.indices.create(index=INDEX, body={"settings": settings})
        raw.index(index=INDEX, id="1", refresh=True, **body_kw(driver, DOC))
    finally:
        raw.close()


@pytest.fixture(params=["elasticsearch", "opensearch"])
def driver(request: pytest.FixtureRequest) -> str:
    require_driver(request.param, MODULES[request.param])
    return str(request.param)


@pytest.fixture
def node(driver: str, real_server: Callable[[str], Any]) -> Any:
    """The session's server of ``driver`` (``.url``, ``.host``, ``.port``), seeded."""
    server = real_server(driver)
    seed(driver, server.url)
    return server


@pytest.fixture(scope="session")
def _netns_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {}
    yield made
    for server, ns in made.values():
        server.kill()
        ns.close()


@pytest.fixture
def netns_node(driver: str, _netns_nodes: dict[str, Any],
               tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server of ``driver`` inside a network namespace (``.namespace.firewall``), once
    per session, seeded."""
    require_netns()
    require_installed(driver)
    if driver not in _netns_nodes:
        from resilience.faults.netns import Namespace

        if driver == "elasticsearch":
            from resilience.servers.elasticsearch import ElasticsearchNode as Node
        else:
            from resilience.servers.opensearch import OpenSearchNode as Node  # type: ignore[assignment]
        ns = Namespace()
        server = Node(Path(tmp_path_factory.mktemp(f"{driver}-netns")), host=ns.ns_ip,
                      netns=ns.name, heap_mb=256)
        _netns_nodes[driver] = (server, ns)
        server.start(180)
    server, ns = _netns_nodes[driver]
    if server.frozen:
        server.thaw()
    seed(driver, server.url)
    server.namespace = ns
    return server


class Client(Blocking):
    """A sync or async wrapper behind one blocking interface (coroutines run to
    completion on the test's own loop); the wrapper is ``client.wrapped``."""


MakeClient = Callable[..., Client]


def _factory(driver: str, is_async: bool) -> Iterator[MakeClient]:
    sync_cls, async_cls = wrapper_classes(driver)
    yield from blocking_factory("async" if is_async else "sync", Client, sync_cls,
                                async_cls, FAST)


@pytest.fixture
def make_sync(driver: str) -> Iterator[MakeClient]:
    """Factory of sync wrappers of ``driver`` with FAST settings, closed after the test."""
    yield from _factory(driver, False)


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest, driver: str) -> Iterator[MakeClient]:
    """Factory over the sync and the async wrapper of ``driver``."""
    yield from _factory(driver, request.param == "async")
