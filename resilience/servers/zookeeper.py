"""ZooKeeper 3.8 from the Debian package ``zookeeper``, the JVM started directly.

No init scripts: ``java -cp zookeeper.jar:slf4j-simple.jar QuorumPeerMain zoo.cfg``
(without slf4j-simple it logs nothing at all). Our zoo.cfg binds the client port to
127.0.0.1, turns the admin server off (it would take port 8080) and whitelists the
four-letter words. ``tickTime`` defaults to 500 ms, so sessions may be as short as 1 s
(2 x tickTime) and an ensemble elects a leader in about a second.

Ready when ``srvr`` shows a ``Mode:`` line: ``ruok`` answers ``imok`` even without a
quorum, ``srvr`` says "not currently serving requests" until the node has one.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from resilience.servers._base import (
    Cluster,
    NotInstalledError,
    Server,
    ServerSpec,
    install_command,
)
from resilience.servers._ports import free_port
from resilience.servers.install import apt_install_server, find_binary

__all__ = ["SPEC", "ZooKeeper", "ZooKeeperEnsemble", "ensemble", "four_letter", "install"]

NAME = "zookeeper"
JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# Small heap and the serial collector: three nodes fit in well under 1 GB of RSS.
JVM_OPTS = ("-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:-UsePerfData",
            "-Djava.net.preferIPv4Stack=true", "-Dzookeeper.jmx.log4j.disable=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true")  # fmt: skip


def four_letter(host: str, port: int, word: str, timeout: float) -> str:
    """Send a four-letter word (``srvr``, ``ruok``, ``mntr``...) and return the reply.

    Raises:
        OSError: refused, reset or timed out (bounded by ``timeout`` seconds in total).
    """
    end = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        chunks = []
        while True:  # the server closes after its reply; a trickle cannot outlast `end`
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{word} on {host}:{port}: no complete reply in {timeout} s")
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def java_binary() -> Path:
    """The java to run: ``$JAVA_HOME/bin/java`` or ``java`` on PATH."""
    candidates: list[str] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    candidates += ["/usr/bin/java", "java"]
    return find_binary(NAME, candidates)


class ZooKeeper(Server):
    """One ZooKeeper server: standalone, or member ``myid`` of an ensemble.

    Args:
        data_dir: snapshots, transaction log, zoo.cfg, myid and the log.
        port: client port; free when omitted.
        tick_time_ms: ``tickTime``; session timeouts are bounded by 2x..20x of it.
        myid: this member's id in ``peers`` (ensemble only).
        peers: ``{myid: (peer_port, election_port)}`` of every member (ensemble only),
            all on ``host``.
        host: address to listen on (client, peer and election ports); loopback unless
            you run it in a namespace.
        netns: run inside this network namespace (``ip netns exec NAME``), with ``host``
            one of its addresses; see :class:`~resilience.servers._server.Server`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        name: str = "zookeeper",
        tick_time_ms: int = 500,
        myid: int | None = None,
        peers: dict[int, tuple[int, int]] | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        if (myid is None) != (peers is None) or (peers is not None and myid not in peers):
            raise ValueError(f"{name}: give both myid and peers (with myid in peers) or neither")
        ports = {"client": port or free_port()}
        super().__init__(name, kind=NAME, data_dir=data_dir, ports=ports, host=host, netns=netns)
        if peers is not None and myid is not None:
            self.ports["peer"], self.ports["election"] = peers[myid]
        self.tick_time_ms = tick_time_ms
        self.myid = myid
        self.peers = dict(peers or {})

    @property
    def config_path(self) -> Path:
        return self.data_dir / "zoo.cfg"

    def prepare(self) -> None:
        data = self.data_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={data}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,isro,cons",
            "maxClientCnxns=0",
        ]
        if self.myid is not None:
            (data / "myid").write_text(f"{self.myid}\n")
            for sid, (peer, election) in sorted(self.peers.items()):
                lines.append(f"server.{sid}={self.host}:{peer}:{election}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        for jar in JARS:
            _need_file(jar)
        cp = ":".join(JARS)
        return [str(java_binary()), *JVM_OPTS, "-cp", cp, MAIN_CLASS, str(self.config_path)]

    def mode(self, timeout: float = 1.0) -> str | None:
        """``standalone``, ``leader`` or ``follower``; None while it serves no requests."""
        for line in four_letter(self.host, self.port, "srvr", timeout).splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def probe(self, timeout: float) -> bool:
        """``srvr`` answers with a ``Mode:`` line (so a quorum member has a quorum)."""
        return self.mode(timeout) is not None


def _need_file(path: str) -> None:
    if not os.path.isfile(path):
        raise NotInstalledError(
            NAME, f"not installed ({path} is missing)", install_hint=install_command(NAME)
        )


class ZooKeeperEnsemble(Cluster):
    """A ZooKeeper ensemble; :attr:`hosts` is the connection string for clients."""

    members: list[ZooKeeper]  # type: ignore[assignment]

    def __iter__(self) -> Iterator[ZooKeeper]:
        return iter(self.members)

    def __getitem__(self, index: int) -> ZooKeeper:
        return self.members[index]

    @property
    def hosts(self) -> str:
        """``"127.0.0.1:p1,127.0.0.1:p2,..."`` for ``KazooClient(hosts=...)``."""
        return ",".join(self.addresses)

    def leader(self, timeout: float = 1.0) -> ZooKeeper | None:
        """The member that is leader now, or None (no quorum)."""
        for member in self.members:
            try:
                if member.is_running() and not member.frozen and member.mode(timeout) == "leader":
                    return member
            except OSError:
                continue
        return None


def ensemble(data_dir: Path, nodes: int = 3, *, tick_time_ms: int = 500) -> ZooKeeperEnsemble:
    """A ZooKeeper ensemble of ``nodes`` members on free ports, not started."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    peers = {sid: (free_port(), free_port()) for sid in range(1, nodes + 1)}
    members = [
        ZooKeeper(
            Path(data_dir) / f"zk{sid}",
            name=f"zookeeper-{sid}",
            tick_time_ms=tick_time_ms,
            myid=sid,
            peers=peers,
        )
        for sid in peers
    ]
    return ZooKeeperEnsemble("zookeeper-ensemble", members)


def is_installed() -> bool:
    """True when java and the ZooKeeper and slf4j-simple jars are present."""
    try:
        java_binary()
    except NotInstalledError:
        return False
    return all(os.path.isfile(jar) for jar in JARS)


def install() -> str:
    """Install the Debian package ``zookeeper`` (and its Java runtime) if missing."""
    return apt_install_server(NAME, ["zookeeper"], is_installed, lambda: JARS[0])


def _create(work_dir: Path) -> Server | Cluster:
    return ZooKeeper(work_dir)


SPEC = ServerSpec(
    name=NAME,
    description="ZooKeeper 3.8 from the Debian package, JVM started directly",
    install=install,
    is_installed=is_installed,
    create=_create,
    start_timeout=30.0,
)
