"""The OpenSearch wrapper: opensearch-py behind deadlines, a breaker per node, retries.

::

    client = OpenSearch("http://10.0.0.1:9200,http://10.0.0.2:9200", timeout=0.2)
    client.index(index="docs", id="1", body={"title": "hi"})   # retried: it has an id
    client.search(index="docs", body={"query": {"match": {"title": "hi"}}})

The methods are opensearch-py's own, with its keywords (``body=``, ``params=``);
``timeout=`` is the call's budget in seconds (a string goes to the server as its own
``timeout``, which opensearch-py would otherwise read as the socket timeout). Each node
has its own raw ``opensearchpy.OpenSearch`` with ``max_retries=0``: opensearch-py turns
a connect timeout into ``ConnectionError('N/A')`` and retries it even with
``retry_on_timeout=False``; here it is a ``BackendTimeoutError``, never retried by the
driver, and bounded by the deadline. See docs/search.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilience.clients._errormap import ErrorMap
from resilience.clients._search import AsyncSearchAPI, SearchAPI, SearchBase
from resilience.clients.opensearch._options import OpenSearchOptions
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
)

if TYPE_CHECKING:
    from urllib3.connectionpool import HTTPConnectionPool

__all__ = ["AsyncOpenSearch", "OpenSearch", "error_map"]


def error_map() -> ErrorMap:
    """Driver exception -> resilience error, most specific first (after the status rules
    of the shared search client: 4xx pass through, 429 is back-pressure, 502-504 are
    unavailable)."""
    from opensearchpy.exceptions import (
        ConnectionError,
        ConnectionTimeout,
        ImproperlyConfigured,
        SerializationError,
        SSLError,
        TransportError,
    )

    return ErrorMap([
        ((TypeError, ValueError, ImproperlyConfigured), None, "the caller's mistake"),
        (ConnectionTimeout, BackendTimeoutError, "timed out"),  # a ConnectionError too
        (SSLError, BackendUnavailableError, "TLS failed"),
        (ConnectionError, BackendUnavailableError, "connection failed"),
        (SerializationError, BackendProtocolError, "unreadable reply"),
        (TransportError, BackendError, "server error"),
    ])


class _OpenSearch(SearchBase):
    """opensearch-py's part: building a node's raw client, reading its errors."""

    service = "opensearch"
    options_class = OpenSearchOptions
    driver_modules = ("opensearchpy",)
    extra = "opensearch"
    pit_methods = ("create_pit", "delete_pit")
    bulk_key = "body"
    options: OpenSearchOptions

    def _error_map(self) -> ErrorMap:
        return error_map()

    def _new_raw(self, url: str) -> tuple[Any, HTTPConnectionPool]:
        from opensearchpy import OpenSearch as Raw

        from resilience.clients._search._http import harden_pool

        o = self.options
        kw: dict[str, Any] = {
            "timeout": o.timeout, "pool_maxsize": o.pool_size, "max_retries": 0,
            "retry_on_status": (), "retry_on_timeout": False, "sniff_on_start": False,
            "sniff_on_connection_fail": False, "sniffer_timeout": None,
        }
        if o.api_key is not None:
            kw["headers"] = {"authorization": f"ApiKey {o.api_key}"}
        if o.username is not None:
            kw["http_auth"] = (o.username, o.password or "")
        if url.startswith("https:"):
            kw["verify_certs"] = o.verify_certs
            for name in ("ca_certs", "client_cert", "client_key"):
                if getattr(o, name) is not None:
                    kw[name] = getattr(o, name)
        raw = Raw(hosts=[url], **kw)
        pool = raw.transport.connection_pool.connections[0].pool
        harden_pool(pool, connect_timeout=o.connect_timeout, pool_timeout=o.pool_timeout,
                    default_timeout=o.timeout)
        return raw, pool

    def _close_raw(self, raw: Any) -> None:
        raw.close()

    def _server_timeout(self, kwargs: dict[str, Any]) -> None:
        # opensearch-py takes ``timeout`` as the socket timeout unless ``request_timeout``
        # is given too; our pool ignores both and keeps the deadline.
        kwargs.setdefault("request_timeout", self.options.timeout)

    @staticmethod
    def _status(exc: BaseException) -> int | None:
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) else None  # not 'N/A' or 'TIMEOUT'

    @staticmethod
    def _root(exc: BaseException) -> BaseException | None:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        return args[2] if len(args) > 2 and isinstance(args[2], BaseException) else None


class OpenSearch(SearchAPI, _OpenSearch):
    """An OpenSearch client that never hangs; see the module docstring.

    Args:
        hosts: nodes as ``http(s)://host:port`` (or ``host:port``), a comma-separated
            string or a list; default from RESILIENCE_OPENSEARCH_HOSTS. Each node is an
            endpoint with its own breaker.
        name: a named instance: RESILIENCE_OPENSEARCH_<NAME>_* variables apply.
        environ: the environment to read (``os.environ`` when None).
        events: the event bus to emit on; a private silent one by default.
        breakers: a breaker registry to share (keyed ``host:port``).
        clock: time source of the pipeline and breakers (a fake clock in tests).
        **options: any :class:`OpenSearchOptions` field by its flat name.

    Raises:
        ConfigError: a bad argument or variable, named in the message (never a secret).
        MissingDriverError: opensearch-py is not installed.
    """


class AsyncOpenSearch(AsyncSearchAPI, _OpenSearch):
    """The asyncio twin of :class:`OpenSearch`: the sync driver on worker threads under
    the same deadline (opensearch-py's own async client needs aiohttp)."""
