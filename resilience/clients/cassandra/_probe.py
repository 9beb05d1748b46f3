"""The health probe of one Cassandra host while its breaker is open.

See docs/cassandra.md#health-probes.

``SELECT release_version FROM system.local`` sent to exactly that host (``host=``: the
driver's plan is that host alone, no fallthrough to another coordinator; the profile's
FallthroughRetryPolicy retries nothing), on the driver's own connection to it, with the
probe's timeout as the request timeout. ``system.local`` is the node's own row: no
replica is asked, no user table is read.

Why through the driver and not a native-protocol ``OPTIONS`` on a fresh socket: a user
call can reach a host only once the driver has a live connection pool to it (a host
the driver marked down is not even in the load-balancing plan until its reconnection
succeeds). A fresh socket would say "up" before that, the trial call would find no
connection, and the breaker would open again with a longer interval. The targeted
query succeeds exactly when a user call can; it adds no pool and no connection (one
stream id on the existing one, released when the reply comes, late or not), and to a
host the driver has marked down it fails at once without I/O.

The cluster endpoint (index 0, opened when no host at all could be reached) is probed
with the same query on any host the driver has up again; before the session ever
connected there is nothing to probe (the next user call connects, in the background).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROBE_CQL", "NotProbeable", "outcome", "send_probe"]

PROBE_CQL = "SELECT release_version FROM system.local"


class NotProbeable(Exception):
    """No session yet, or no host to send the probe to."""


def _target(client: Any, connector: Any, index: int) -> Any:
    if index == 0:  # the cluster: any host the driver has up
        cluster = connector.cluster
        hosts = [h for h in cluster.metadata.all_hosts() if h.is_up] if cluster else []
        if not hosts:
            raise NotProbeable("no host is up in the driver")
        return hosts[0]
    for host, i in list(client._host_ids.values()):
        if i == index:
            return host
    raise NotProbeable(f"host {client.endpoints[index]} is not known to the session")


def send_probe(client: Any, index: int, timeout: float) -> Any:
    """Send the probe of endpoint ``index``; the driver's ResponseFuture (ended by the
    driver's own timer at ``timeout``). Raises NotProbeable without a session."""
    from cassandra.query import SimpleStatement

    connector = client._driver.peek()
    session = None if connector is None else connector.session
    if session is None:
        raise NotProbeable("the session is not connected")
    host = _target(client, connector, index)
    return session.execute_async(SimpleStatement(PROBE_CQL), timeout=timeout, host=host)


def outcome(future: Any) -> None:
    """Raise the ended future's error, if any."""
    failed = future._final_exception
    if failed is not None:
        raise failed
