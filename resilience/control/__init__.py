"""Fleet-wide control through ZooKeeper: force a breaker open or closed, disable it, or
change a timeout, for every process of a service, by writing one node.

    agent = resilience.control.start(zk=ZooKeeper("10.0.0.1:2181"), service="orders")

    $ resilience control set memcache.breaker=forced_open --zk 10.0.0.1:2181 --service orders

Each process runs a :class:`ControlAgent` that watches ``/resilience/control/<service>``
(JSON, see :mod:`resilience.control._schema`), applies it to the live clients of the
process (``resilience.clients.live_clients``) and keeps the last good data when
ZooKeeper is unreachable (fail-static). Guide: docs/control.md.
"""

from resilience.control._agent import DEFAULT_ROOT, ControlAgent, node_path, start
from resilience.control._schema import (
    BREAKER_MODES,
    CLIENTS,
    Settings,
    dumps,
    parse_assignments,
    parse_node,
    validate,
)

__all__ = [
    "BREAKER_MODES",
    "CLIENTS",
    "DEFAULT_ROOT",
    "ControlAgent",
    "Settings",
    "dumps",
    "node_path",
    "parse_assignments",
    "parse_node",
    "start",
    "validate",
]
