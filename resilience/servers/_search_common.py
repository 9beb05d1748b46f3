"""A single-node Elasticsearch or OpenSearch server on loopback, run unprivileged.

:class:`SearchNode` runs the launcher of an installed
:class:`~resilience.servers._search_install.Distribution` with its HTTP and transport
ports on loopback; ``elasticsearch.py`` and ``opensearch.py`` subclass it with a probe
and a client.

Running as root
---------------
Both launchers refuse to run as root. When we are root the node runs as the system user
:data:`RUN_USER` (created on install or first start), through ``setpriv``. That user must
be able to read the unpacked distribution and write the node's directories, so:

* the distribution is unpacked under :func:`dist_root`: ``$RESILIENCE_HOME`` when every
  directory on that path is searchable by others, else ``/var/cache/resilience`` (root's
  ``~/.cache`` is inside ``/root``, mode 0700);
* the node's config, data, logs and tmp live in a *runtime directory* owned by that user
  under ``<tempdir>/resilience-search/``, named after the server's ``data_dir`` (so a
  restart finds the same data), with a ``node`` symlink to it inside ``data_dir``.
  Runtime directories whose ``data_dir`` is gone are removed on the next start.

When we are not root, the node runs as ourselves with its directories in ``data_dir``.

Config: our own ``<dist>.yml`` (single-node discovery, loopback, our ports, disk
thresholds off) and the distribution's ``jvm.options`` minus its relative-path logging
options (gc.log, hs_err, heap dumps: they would land in the read-only home) plus
:data:`DEFAULT_JVM_OPTIONS` and the heap size.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resilience.servers._base import (
    Cluster,
    NotInstalledError,
    Server,
    install_command,
    read_rss_bytes,
)
from resilience.servers._ports import free_port, free_ports
from resilience.servers._search_install import (
    MARKER,
    RUN_USER,
    Distribution,
    ensure_run_user,
    java_home,
)

__all__ = ["DEFAULT_JVM_OPTIONS", "SearchNode", "search_cluster"]

# C1 only and no pre-touching of the heap: measured to cut the start (docs/servers-search.md);
# throughput hardly matters for a test server.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:-AlwaysPreTouch")
# Options of the shipped jvm.options that write relative to the working directory.
_DROPPED_JVM_OPTIONS = (
    "-Xms",
    "-Xmx",
    "-Xlog:gc",
    "-Xloggc",
    "gc.log",
    "GCLog",
    "ErrorFile",
    "HeapDump",
    "PrintGC",
    "PrintTenuring",
)


class SearchNode(Server):
    """One Elasticsearch or OpenSearch node on loopback (see module doc).

    Alone by default (single-node discovery); with ``seed_hosts`` it is a member of a
    cluster (see :func:`search_cluster`).

    Args:
        data_dir: holds the log (``<name>.log``) and, when not root, the node's files.
        name: label and node name.
        http_port: a free one when omitted; it is :attr:`port`.
        transport_port: a free one when omitted.
        heap_mb: JVM heap (-Xms and -Xmx).
        jvm_options: extra JVM options, after the distribution's.
        cluster_name: the cluster's name (``resilience-<name>`` by default).
        seed_hosts: transport ``host:port`` of every member, to form a cluster.
        initial_masters: node names of the members that vote in the first election.
        host: ``network.host`` (HTTP and transport); loopback unless you run it in a
            namespace.
        netns: run inside this network namespace (``ip netns exec NAME``), with ``host``
            one of its addresses; see :class:`~resilience.servers._server.Server`.
    """

    dist: Distribution  # set by each subclass

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str | None = None,
        http_port: int | None = None,
        transport_port: int | None = None,
        heap_mb: int = 512,
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        cluster_name: str | None = None,
        seed_hosts: Sequence[str] = (),
        initial_masters: Sequence[str] = (),
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        if heap_mb < 128:
            raise ValueError(f"heap_mb must be >= 128, got {heap_mb}")
        ports = {"http": http_port or free_port(), "transport": transport_port or free_port()}
        super().__init__(
            name or self.dist.name,
            kind=self.dist.name,
            data_dir=data_dir,
            ports=ports,
            host=host,
            netns=netns,
        )
        self.heap_mb = heap_mb
        self.jvm_options = list(jvm_options)
        self.cluster_name = cluster_name or f"resilience-{self.name}"
        self.seed_hosts = list(seed_hosts)
        self.initial_masters = list(initial_masters)
        self.as_user = os.geteuid() == 0

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the HTTP port."""
        return f"http://{self.host}:{self.port}"

    @property
    def node_dir(self) -> Path:
        """The node's config, data, logs and tmp (see module doc)."""
        if not self.as_user:
            return self.data_dir / "node"
        tag = hashlib.sha1(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return _runtime_root() / f"{self.name}-{tag}"

    def prepare(self) -> None:
        home = self.dist.home
        if not (home / MARKER).is_file():
            raise NotInstalledError(
                self.name,
                f"{self.dist.name} is not installed at {home}",
                install_hint=install_command(self.kind),
            )
        node = self.node_dir
        if self.as_user:
            ensure_run_user()
            _collect_orphans()
            (node / "origin").parent.mkdir(parents=True, exist_ok=True)
            (node / "origin").write_text(str(self.data_dir.resolve()))
            link = self.data_dir / "node"
            if not link.is_symlink():
                link.symlink_to(node)
        conf = node / "config"
        for sub in ("config", "data", "logs", "tmp"):
            (node / sub).mkdir(parents=True, exist_ok=True)
        for item in (home / "config").iterdir():
            if item.is_file() and item.name != "jvm.options":
                shutil.copy(item, conf / item.name)
        settings = [
            f"cluster.name: {self.cluster_name}",
            f"node.name: {self.name}",
            *self._discovery(),
            f"network.host: {self.host}",
            f"http.port: {self.ports['http']}",
            f"transport.port: {self.ports['transport']}",
            f"path.data: {node / 'data'}",
            f"path.logs: {node / 'logs'}",
            "cluster.routing.allocation.disk.threshold_enabled: false",
            *self.dist.settings,
        ]
        (conf / f"{self.dist.name}.yml").write_text("\n".join(settings) + "\n")
        (conf / "jvm.options").write_text("\n".join(self._jvm_options(node)) + "\n")
        if self.as_user:
            user = pwd.getpwnam(RUN_USER)
            for path in (node, *node.rglob("*")):
                os.lchown(path, user.pw_uid, user.pw_gid)

    def _discovery(self) -> list[str]:
        if not self.seed_hosts:
            return ["discovery.type: single-node"]
        return [
            f"discovery.seed_hosts: [{', '.join(self.seed_hosts)}]",
            f"{self.dist.initial_masters_setting}: [{', '.join(self.initial_masters)}]",
        ]

    def _jvm_options(self, node: Path) -> list[str]:
        shipped = (self.dist.home / "config" / "jvm.options").read_text().splitlines()
        kept = [
            line
            for line in shipped
            if line.strip()
            and not line.startswith("#")
            and not any(word in line for word in _DROPPED_JVM_OPTIONS)
        ]
        return [
            *kept,
            f"-Xms{self.heap_mb}m",
            f"-Xmx{self.heap_mb}m",
            f"-XX:ErrorFile={node / 'logs' / 'hs_err_pid%p.log'}",
            *self.jvm_options,
        ]

    def command(self) -> list[str]:
        if java_home() is None:
            raise NotInstalledError(
                self.name, "no Java 17 runtime", install_hint=install_command(self.kind)
            )
        launcher = [str(self.dist.launcher)]
        if not self.as_user:
            return launcher
        return [
            "setpriv",
            f"--reuid={RUN_USER}",
            f"--regid={RUN_USER}",
            "--clear-groups",
            "--",
            *launcher,
        ]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop("JAVA_HOME", None)  # the launchers warn about it and use <PREFIX>_JAVA_HOME
        node, prefix = self.node_dir, self.dist.env_prefix
        env.update(
            {
                f"{prefix}_JAVA_HOME": str(java_home()),
                f"{prefix}_PATH_CONF": str(node / "config"),
                f"{prefix}_TMPDIR": str(node / "tmp"),
                "TMPDIR": str(node / "tmp"),
                "HOME": str(node),
            }
        )
        return env

    def jvm_pid(self) -> int | None:
        """The server JVM's pid (the launcher may be its parent), or None."""
        pgid = self.pid
        if pgid is None or not self.is_running():
            return None
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.getpgid(int(proc.name)) != pgid:
                    continue
                if self.dist.main_class.encode() in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
        return None

    def describe(self) -> dict[str, Any]:
        """The base record plus the server JVM's pid and the HTTP URL."""
        return {**super().describe(), "jvm_pid": self.jvm_pid(), "url": self.url}

    def rss_bytes(self) -> int | None:
        """Resident memory of the server JVM (not its launcher), or None."""
        pid = self.jvm_pid()
        return read_rss_bytes(pid) if pid is not None else None


def _runtime_root() -> Path:
    root = Path(tempfile.gettempdir()) / "resilience-search"
    root.mkdir(exist_ok=True)
    root.chmod(0o711)  # others may enter a node dir they own, but not list the others
    return root


def _collect_orphans() -> None:
    """Remove runtime directories whose ``data_dir`` is gone and whose node is not running."""
    for node in _runtime_root().iterdir():
        origin = node / "origin"
        try:
            gone = origin.is_file() and not Path(origin.read_text()).exists()
        except OSError:
            continue
        # Elasticsearch locks data/node.lock, OpenSearch data/nodes/0/node.lock
        locks = [node / "data" / "node.lock", node / "data" / "nodes" / "0" / "node.lock"]
        if gone and not any(_node_locked(lock) for lock in locks):
            shutil.rmtree(node, ignore_errors=True)


def _node_locked(lock_file: Path) -> bool:
    """True while a server holds its data directory's lock (a POSIX lock, as Java takes)."""
    try:
        with lock_file.open("rb+") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.lockf(fh, fcntl.LOCK_UN)
    except OSError:  # no lock file: the node never started or its data is gone
        return False
    return False


def search_cluster(
    node_class: type[SearchNode], data_dir: Path, nodes: int = 3, heap_mb: int = 256
) -> Cluster:
    """``nodes`` members of one cluster on loopback, each master-eligible, not started.

    Members start in parallel; the cluster forms once a majority is up. Each member's
    probe waits for cluster health yellow through that member.

    Raises:
        ValueError: fewer than 2 nodes (use the node class alone for one).
    """
    if nodes < 2:
        raise ValueError(f"nodes must be >= 2 for a cluster, got {nodes}")
    kind = node_class.dist.name
    names = [f"{kind}-{i}" for i in range(1, nodes + 1)]
    transports = free_ports(nodes)
    seeds = [f"127.0.0.1:{port}" for port in transports]
    members = [
        node_class(
            Path(data_dir) / name,
            name=name,
            transport_port=port,
            heap_mb=heap_mb,
            cluster_name=f"resilience-{kind}-cluster",
            seed_hosts=seeds,
            initial_masters=names,
        )
        for name, port in zip(names, transports, strict=True)
    ]
    return Cluster(f"{kind}-cluster", members)
