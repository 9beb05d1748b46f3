"""Real servers as processes: start, probe, stop, kill, freeze, restart; and the registry.

Theory of operation
-------------------
A :class:`Server` is one OS process (and whatever it forks) in its own session and
process group (``start_new_session=True``), so ``stop``/``kill``/``freeze`` reach every
descendant with one ``killpg``. Its output goes to ``log_path`` (a file, never a pipe: a
chatty JVM fills a pipe and blocks). Its environment is built explicitly
(:meth:`Server.environment`), never inherited wholesale. ``start`` writes the config
(:meth:`Server.prepare`), spawns :meth:`Server.command`, then calls :meth:`Server.probe`
until it answers or the timeout passes; if the process exits or the timeout passes it is
stopped and :class:`ServerError` says which server, the exact command, the tail of the
log and the install command. ``restart`` keeps the ports and the data directory.

A :class:`Cluster` is several servers started in parallel (threads, one per member) and
stopped together; subclasses order starts where a topology needs it (nsqlookupd before
nsqd) or add a cluster-wide readiness check.

States of a Server: ``new -> running -> (frozen <-> running) -> stopped -> running ...``.
No state is kept apart from the ``Popen`` object and the frozen flag: ``is_running`` asks
the kernel.

Registry: how a server module plugs in
--------------------------------------
:data:`SERVERS` maps a server name to ``"module:ATTRIBUTE"``; the module is imported only
when that server is used (so importing this package imports no driver and no other server
module). The attribute is a :class:`ServerSpec`::

    # resilience/servers/cassandra.py
    SPEC = ServerSpec(
        name="cassandra",
        description="Apache Cassandra 5.0 from Maven Central jars, on Java 17",
        install=install,            # () -> str: idempotent, cached; says what it did
        is_installed=is_installed,  # () -> bool: cheap, no network
        create=create,              # (work_dir: Path) -> Server | Cluster, not started
        start_timeout=120.0,
    )

Helpers for installers (locks, cache dir, apt, retries, ``find_binary``) are in
:mod:`resilience.servers.install`; free ports in :mod:`resilience.servers._ports`. The
pytest fixture ``real_server(name)`` and ``resilience servers start NAME`` both work for
every registered name through ``create``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resilience.servers._cluster import Cluster
from resilience.servers._errors import (
    LOG_TAIL_LINES,
    NotInstalledError,
    ServerError,
    install_command,
)
from resilience.servers._process import (
    process_start_time,
    read_rss_bytes,
    signal_group,
    stop_group,
    wait_group_stopped,
)
from resilience.servers._server import Server

__all__ = [
    "LOG_TAIL_LINES",
    "SERVERS",
    "Cluster",
    "NotInstalledError",
    "Server",
    "ServerError",
    "ServerSpec",
    "get_spec",
    "install_command",
    "process_start_time",
    "read_rss_bytes",
    "signal_group",
    "stop_group",
    "wait_group_stopped",
]

# name -> "module:ATTRIBUTE" holding that server's ServerSpec. Imported lazily.
SERVERS: dict[str, str] = {
    "memcached": "resilience.servers.memcached:SPEC",
    "zookeeper": "resilience.servers.zookeeper:SPEC",
    "nsq": "resilience.servers.nsq:SPEC",
    "cassandra": "resilience.servers.cassandra:SPEC",
    "elasticsearch": "resilience.servers.elasticsearch:SPEC",
    "opensearch": "resilience.servers.opensearch:SPEC",
}


@dataclass(frozen=True)
class ServerSpec:
    """What the registry knows about one server; see the module docstring.

    Attributes:
        name: registry name (``"memcached"``).
        description: one line for ``resilience servers status``.
        install: idempotent, cached installer; returns a one-line summary of what it did.
        is_installed: cheap check with no network access.
        create: builds the default topology in ``work_dir`` on free ports, not started.
        start_timeout: seconds the default topology may take to become ready here.
    """

    name: str
    description: str
    install: Callable[[], str]
    is_installed: Callable[[], bool]
    create: Callable[[Path], Server | Cluster]
    start_timeout: float = 60.0


def get_spec(name: str) -> ServerSpec:
    """Import the module that registers ``name`` and return its :class:`ServerSpec`.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        ServerError: the module is not there yet or does not define the spec.
    """
    target = SERVERS.get(name)
    if target is None:
        raise ValueError(f"unknown server {name!r}; known servers: {', '.join(SERVERS)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ServerError(name, f"no harness module {module_name} in this version") from exc
    spec = getattr(module, attr, None)
    if not isinstance(spec, ServerSpec):
        raise ServerError(name, f"{module_name} defines no ServerSpec named {attr}")
    return spec
