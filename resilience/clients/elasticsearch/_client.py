"""The Elasticsearch wrapper: elasticsearch-py 8 behind deadlines, a breaker per node, retries.

::

    es = Elasticsearch("http://10.0.0.1:9200,http://10.0.0.2:9200", timeout=0.2)
    es.index(index="docs", id="1", document={"title": "hi"})   # retried: it has an id
    es.search(index="docs", query={"match": {"title": "hi"}})
    with resilience.deadline(0.5):
        es.get(index="docs", id="1")                           # NotFoundError if missing

The methods are elasticsearch-py's own, with its keywords (``document=``, ``query=``,
``operations=``); ``timeout=`` is the call's budget in seconds. Each node has its own
raw ``elasticsearch.Elasticsearch`` (``max_retries=0``, ``retry_on_status=()``,
``retry_on_timeout=False``, no sniffing), whose urllib3 pool keeps the deadline; the
node is chosen by its breaker. No ``options()`` client is built per call: the deadline
reaches the pool directly. See docs/search.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilience.clients._errormap import ErrorMap
from resilience.clients._search import AsyncSearchAPI, SearchAPI, SearchBase
from resilience.clients.elasticsearch._options import ElasticsearchOptions
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
)

if TYPE_CHECKING:
    from urllib3.connectionpool import HTTPConnectionPool

__all__ = ["AsyncElasticsearch", "Elasticsearch", "error_map"]


def error_map() -> ErrorMap:
    """Driver exception -> resilience error, most specific first (after the status rules
    of the shared search client: 4xx pass through, 429 is back-pressure, 502-504 are
    unavailable)."""
    from elastic_transport import (
        ConnectionError,
        ConnectionTimeout,
        SerializationError,
        TlsError,
        TransportError,
    )
    from elasticsearch import ApiError, UnsupportedProductError

    return ErrorMap([
        ((TypeError, ValueError), None, "the caller's mistake"),
        (ConnectionTimeout, BackendTimeoutError, "timed out"),
        (TlsError, BackendUnavailableError, "TLS failed"),
        (ConnectionError, BackendUnavailableError, "connection failed"),
        (SerializationError, BackendProtocolError, "unreadable reply"),
        (UnsupportedProductError, BackendProtocolError, "the server is not Elasticsearch"),
        (ApiError, BackendError, "server error"),
        (TransportError, BackendUnavailableError, "transport error"),
    ])


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


class _Elasticsearch(SearchBase):
    """elasticsearch-py's part: building a node's raw client, reading its errors."""

    service = "elasticsearch"
    options_class = ElasticsearchOptions
    driver_modules = ("elasticsearch",)
    extra = "elasticsearch"
    pit_methods = ("open_point_in_time", "close_point_in_time")
    bulk_key = "operations"
    options: ElasticsearchOptions

    def _error_map(self) -> ErrorMap:
        return error_map()

    def _new_raw(self, url: str) -> tuple[Any, HTTPConnectionPool]:
        from elasticsearch import Elasticsearch as Raw

        from resilience.clients._search._http import harden_pool

        o = self.options
        kw: dict[str, Any] = {
            "request_timeout": o.timeout, "connections_per_node": o.pool_size,
            "max_retries": 0, "retry_on_status": (), "retry_on_timeout": False,
            "sniff_on_start": False, "sniff_before_requests": False,
            "sniff_on_node_failure": False,
        }
        if o.api_key is not None:
            kw["api_key"] = o.api_key
        if o.username is not None:
            kw["basic_auth"] = (o.username, o.password or "")
        if url.startswith("https:"):
            kw["verify_certs"] = o.verify_certs
            for name in ("ca_certs", "client_cert", "client_key"):
                if getattr(o, name) is not None:
                    kw[name] = getattr(o, name)
        raw = Raw(hosts=[url], **kw)
        node_pool: Any = raw.transport.node_pool
        # The node's breaker decides; the pool's dead marking (a warning log line and a
        # growing timeout per failure, ignored with one node) would only cost time.
        node_pool.mark_dead = node_pool.mark_live = _ignore
        node: Any = node_pool.all()[0]  # Urllib3HttpNode: one node per client
        pool = node.pool
        harden_pool(pool, connect_timeout=o.connect_timeout, pool_timeout=o.pool_timeout,
                    default_timeout=o.timeout)
        return raw, pool

    def _close_raw(self, raw: Any) -> None:
        raw.close()

    @staticmethod
    def _status(exc: BaseException) -> int | None:
        meta = getattr(exc, "meta", None)
        status = getattr(meta, "status", None)
        return status if isinstance(status, int) else None  # ApiError only: a reply came

    @staticmethod
    def _root(exc: BaseException) -> BaseException | None:
        # The node raises ``ConnectionError(...) from <urllib3 error>``; the transport
        # then overwrites ``.errors`` with the earlier attempts' (none: max_retries=0).
        return exc.__cause__


class Elasticsearch(SearchAPI, _Elasticsearch):
    """An Elasticsearch client that never hangs; see the module docstring.

    Args:
        hosts: nodes as ``http(s)://host:port`` (or ``host:port``), a comma-separated
            string or a list; default from RESILIENCE_ELASTICSEARCH_HOSTS. Each node is an
            endpoint with its own breaker.
        name: a named instance: RESILIENCE_ELASTICSEARCH_<NAME>_* variables apply.
        environ: the environment to read (``os.environ`` when None).
        events: the event bus to emit on; a private silent one by default.
        breakers: a breaker registry to share (keyed ``host:port``).
        clock: time source of the pipeline and breakers (a fake clock in tests).
        **options: any :class:`ElasticsearchOptions` field by its flat name (``timeout``,
            ``connect_timeout``, ``api_key``, ``username``, ``password``, ``pool_size``,
            ``pool_timeout``, ``breaker_failure_rate``, ``retry_attempts``...).

    Raises:
        ConfigError: a bad argument or variable, named in the message (never a secret).
        MissingDriverError: elasticsearch-py is not installed.

    Construction validates and stores; it opens no connection. The first call builds
    the raw clients (no I/O) and connects within its own deadline.
    """


class AsyncElasticsearch(AsyncSearchAPI, _Elasticsearch):
    """The asyncio twin of :class:`Elasticsearch` (same arguments, methods awaited).

    elasticsearch-py's own ``AsyncElasticsearch`` needs aiohttp; this one runs the sync
    driver on worker threads (``pool_size`` per node) under the same deadline, so the
    event loop never blocks and every worker is free again by the call's deadline.
    """
