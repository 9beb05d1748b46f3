"""Real servers (memcached, ZooKeeper, NSQ, Cassandra, Elasticsearch, OpenSearch) for tests.

Install, start on free loopback ports, probe, freeze, kill, restart and stop real
datastore processes. Importing this package imports no driver and no server module:
each server's module is imported when that server is first used (see :data:`SERVERS`
and :func:`get_spec`). Documentation: docs/servers.md.
"""

from resilience.servers._base import (
    SERVERS,
    Cluster,
    NotInstalledError,
    Server,
    ServerError,
    ServerSpec,
    get_spec,
    install_command,
)
from resilience.servers._ports import free_port, free_ports

__all__ = [
    "SERVERS",
    "Cluster",
    "NotInstalledError",
    "Server",
    "ServerError",
    "ServerSpec",
    "free_port",
    "free_ports",
    "get_spec",
    "install_command",
]
