"""Apache Cassandra 5.0 from Maven Central jars, run on Java 17 with our own minimal config.

- :func:`install` (``resilience servers install cassandra``): the jars of
  ``cassandra-all`` and its runtime dependencies through Maven, cached under
  ``$RESILIENCE_HOME/cassandra-<version>/lib``; Java 17 and Maven from apt if missing
  (:mod:`._install`).
- :class:`Cassandra`: one node on free loopback ports, data in its ``data_dir``; start,
  probe through cassandra-driver, stop, freeze/thaw, kill and restart with its data
  (:mod:`._node`). 3-5 s to start on a quiet 2-core machine, ~340 MB RSS.
- :func:`ring`: several nodes on 127.0.0.1, each on its own ports, for node-loss tests
  (:mod:`._ring`).

The registry's default topology (``real_server("cassandra")``, ``resilience servers
start cassandra``) is one node. Figures and what each choice buys:
docs/servers-cassandra.md.
"""

from __future__ import annotations

from pathlib import Path

from resilience.servers._base import Server, ServerSpec
from resilience.servers.cassandra._install import (
    NAME,
    VERSION,
    install,
    is_installed,
    java17,
    lib_dir,
)
from resilience.servers.cassandra._node import (
    PROTOCOL_VERSION,
    START_TIMEOUT,
    Cassandra,
    driver_cluster,
)
from resilience.servers.cassandra._ring import CassandraRing, ring, tokens

__all__ = [
    "PROTOCOL_VERSION",
    "SPEC",
    "START_TIMEOUT",
    "VERSION",
    "Cassandra",
    "CassandraRing",
    "driver_cluster",
    "install",
    "is_installed",
    "java17",
    "lib_dir",
    "ring",
    "tokens",
]


def _create(work_dir: Path) -> Server:
    return Cassandra(work_dir)


SPEC = ServerSpec(
    name=NAME,
    description=f"Apache Cassandra {VERSION} from Maven Central jars, on Java 17",
    install=install,
    is_installed=is_installed,
    create=_create,
    start_timeout=START_TIMEOUT,
)
