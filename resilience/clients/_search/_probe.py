"""The health probe of one search node while its breaker is open (docs/search.md#health-probes).

``GET /_cluster/health?local=true`` on that node only, on a connection of its own (a
one-connection urllib3 pool made for the probe and closed after it): never the
node's own pool, whose connections may be stuck behind the outage and whose size the
users' calls need. ``local=true``: the node answers from its own cluster state, without
asking the master, so a node that is up answers even while the master is elsewhere or
being elected. Any cluster status (even red) is an answer: the breaker judges the node,
not the cluster. The request is bounded as a total by the probe's timeout (the same
deadline-keeping pool as user calls, :mod:`._http`), with the client's credentials
and TLS settings.
"""

from __future__ import annotations

from typing import Any

from resilience.clients._search._bound import bounded
from resilience.clients._search._http import harden_pool, shutdown_pool
from resilience.clients._search._options import SearchOptions

__all__ = ["HEALTH_PATH", "probe_node"]

HEALTH_PATH = "/_cluster/health?local=true"


def _headers(o: SearchOptions) -> dict[str, str]:
    from urllib3.util import make_headers

    headers = {"accept": "application/json"}
    if o.api_key is not None:
        headers["authorization"] = f"ApiKey {o.api_key}"
    elif o.username is not None:
        headers.update(make_headers(basic_auth=f"{o.username}:{o.password or ''}"))
    return headers


def probe_node(url: str, options: SearchOptions, timeout: float) -> None:
    """Return once the node at ``url`` answered ``200`` to the health request within
    ``timeout`` seconds; raise otherwise (the status in the message)."""
    from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    pool: Any
    if scheme == "https":
        o = options
        pool = HTTPSConnectionPool(
            host.strip("[]"), int(port), maxsize=1, retries=False,
            cert_reqs="CERT_REQUIRED" if o.verify_certs else "CERT_NONE",
            ca_certs=o.ca_certs, cert_file=o.client_cert, key_file=o.client_key)
    else:
        pool = HTTPConnectionPool(host.strip("[]"), int(port), maxsize=1, retries=False)
    harden_pool(pool, connect_timeout=timeout, pool_timeout=0.0, default_timeout=timeout)
    try:
        with bounded(timeout):
            resp = pool.urlopen("GET", HEALTH_PATH, headers=_headers(options),
                                retries=False, redirect=False, preload_content=True)
    finally:
        shutdown_pool(pool)
    if resp.status != 200:
        raise ConnectionError(f"{url}{HEALTH_PATH}: HTTP {resp.status}")
