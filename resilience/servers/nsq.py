"""nsqd and nsqlookupd 1.3.0, built from the Go module proxy and cached.

Build: the module in ``nsq_build/`` (ours: a go.mod that requires
``github.com/nsqio/nsq v1.3.0`` and repeats nsq's own ``replace`` of go-svc, which is
why ``go install ...@v1.3.0`` cannot be used) is copied to the cache and
``go build -trimpath`` makes both programs, static (``CGO_ENABLED=0``), into
``$RESILIENCE_HOME/nsq/1.3.0/``. ``GOTOOLCHAIN=local``: the installed Go builds it; no
toolchain download.

Run: every address explicit on 127.0.0.1 (nsqd defaults to 0.0.0.0:4150/4151), a
``--broadcast-address=127.0.0.1`` so lookupd hands clients a loopback address rather
than the host name, and a data directory per nsqd. Ready when ``GET /ping`` says OK.
The default topology, :class:`NsqCluster`, is one nsqlookupd and two nsqd registered
with it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from resilience.servers._base import Cluster, Server, ServerError, ServerSpec
from resilience.servers._ports import free_port
from resilience.servers.install import (
    InstallError,
    apt_install,
    find_binary,
    home,
    install_lock,
    retry,
    run_step,
)

__all__ = ["SPEC", "NsqCluster", "Nsqd", "Nsqlookupd", "build", "cluster", "http_get"]

NAME = "nsq"
VERSION = "1.3.0"
PROGRAMS = ("nsqd", "nsqlookupd")
_MODULE_DIR = Path(__file__).with_name("nsq_build")
_GO_CANDIDATES = ("go", "/usr/local/go/bin/go", "/usr/lib/go/bin/go")


def bin_dir() -> Path:
    """Where the built programs are cached."""
    return home() / "nsq" / VERSION


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` (loopback only, no proxy) bounded by ``timeout`` s: (status, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return int(resp.status), bytes(resp.read())


class _NsqProcess(Server):
    program = ""

    def __init__(
        self, data_dir: Path, *, name: str, host: str = "127.0.0.1", netns: str | None = None
    ) -> None:
        ports = {"tcp": free_port(), "http": free_port()}
        super().__init__(name, kind=NAME, data_dir=data_dir, ports=ports, host=host, netns=netns)

    @property
    def tcp_address(self) -> str:
        return f"{self.host}:{self.ports['tcp']}"

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    def binary(self) -> Path:
        return find_binary(NAME, [bin_dir() / self.program])

    def probe(self, timeout: float) -> bool:
        """``GET /ping`` answers 200 ``OK``."""
        status, body = http_get(f"http://{self.http_address}/ping", timeout)
        return status == 200 and body.strip() == b"OK"


class Nsqlookupd(_NsqProcess):
    """One nsqlookupd: ports ``tcp`` (for nsqd) and ``http`` (for consumers' discovery).

    Args:
        host: address to listen on and to broadcast; loopback unless you run it in a
            namespace.
        netns: run inside this network namespace (``ip netns exec NAME``), with ``host``
            one of its addresses; see :class:`~resilience.servers._server.Server`.
    """

    program = "nsqlookupd"

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "nsqlookupd",
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, name=name, host=host, netns=netns)

    def command(self) -> list[str]:
        return [
            str(self.binary()),
            f"--tcp-address={self.tcp_address}",
            f"--http-address={self.http_address}",
            f"--broadcast-address={self.host}",
        ]

    def producers(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """The nsqd nodes registered now (``GET /nodes``)."""
        _, body = http_get(f"http://{self.http_address}/nodes", timeout)
        return list(json.loads(body).get("producers", []))


class Nsqd(_NsqProcess):
    """One nsqd: ports ``tcp`` (publish/subscribe protocol) and ``http`` (``/pub``...).

    Args:
        lookupd_tcp: nsqlookupd TCP addresses to register with.
        node_id: distinct per nsqd (it seeds message ids).
        host: address to listen on and to broadcast; loopback unless you run it in a
            namespace.
        netns: run inside this network namespace (``ip netns exec NAME``), with ``host``
            one of its addresses; see :class:`~resilience.servers._server.Server`.
    """

    program = "nsqd"

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "nsqd",
        lookupd_tcp: list[str] | None = None,
        node_id: int = 1,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, name=name, host=host, netns=netns)
        self.lookupd_tcp = list(lookupd_tcp or [])
        self.node_id = node_id

    def prepare(self) -> None:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        cmd = [
            str(self.binary()),
            f"--tcp-address={self.tcp_address}",
            f"--http-address={self.http_address}",
            f"--broadcast-address={self.host}",
            f"--data-path={self.data_dir / 'data'}",
            f"--node-id={self.node_id}",
        ]
        cmd += [f"--lookupd-tcp-address={addr}" for addr in self.lookupd_tcp]
        return cmd


class NsqCluster(Cluster):
    """One nsqlookupd and N nsqd registered with it.

    ``start`` starts lookupd first, then the nsqd in parallel, then waits until lookupd
    lists every nsqd (so a consumer's discovery finds them all at once).
    """

    def __init__(self, name: str, lookupd: Nsqlookupd, nsqds: list[Nsqd]) -> None:
        super().__init__(name, [lookupd, *nsqds])
        self.lookupd = lookupd
        self.nsqds = nsqds

    @property
    def nsqd_tcp_addresses(self) -> list[str]:
        return [n.tcp_address for n in self.nsqds]

    @property
    def nsqd_http_addresses(self) -> list[str]:
        return [n.http_address for n in self.nsqds]

    @property
    def lookupd_http_addresses(self) -> list[str]:
        return [self.lookupd.http_address]

    def start(self, timeout: float = 30.0) -> NsqCluster:
        end = time.monotonic() + timeout
        self.lookupd.start(timeout)
        try:
            self.start_parallel(self.nsqds, max(1.0, end - time.monotonic()))
            self.wait_registered(max(1.0, end - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def wait_registered(self, timeout: float) -> None:
        """Wait until lookupd lists every nsqd's TCP port.

        Raises:
            ServerError: not all registered within ``timeout`` seconds.
        """
        want = {n.ports["tcp"] for n in self.nsqds}
        end = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < end:
            try:
                seen = {int(p["tcp_port"]) for p in self.lookupd.producers(1.0)}
            except (OSError, ValueError):
                seen = set()
            if want <= seen:
                return
            time.sleep(0.05)
        raise self.lookupd.error(f"nsqd ports {sorted(want - seen)} not registered in {timeout} s")


def cluster(data_dir: Path, nsqds: int = 2) -> NsqCluster:
    """The default topology: one nsqlookupd and ``nsqds`` nsqd, on free ports."""
    if nsqds < 1:
        raise ValueError(f"nsqds must be >= 1, got {nsqds}")
    lookupd = Nsqlookupd(Path(data_dir) / "nsqlookupd")
    nodes = [
        Nsqd(
            Path(data_dir) / f"nsqd{i}",
            name=f"nsqd-{i}",
            lookupd_tcp=[lookupd.tcp_address],
            node_id=i,
        )
        for i in range(1, nsqds + 1)
    ]
    return NsqCluster("nsq", lookupd, nodes)


def is_installed() -> bool:
    """True when both programs are in the cache."""
    return all(os.access(bin_dir() / p, os.X_OK) for p in PROGRAMS)


def _go() -> Path:
    try:
        return find_binary(NAME, _GO_CANDIDATES)
    except ServerError:
        apt_install(NAME, ["golang-go", "ca-certificates"])
        return find_binary(NAME, _GO_CANDIDATES)


def build() -> str:
    """Build nsqd and nsqlookupd with Go into the cache (always; see :func:`install`)."""
    go = _go()
    out = bin_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly",
    }
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="build-") as tmp:
        src = Path(tmp) / "module"
        shutil.copytree(_MODULE_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
        target = Path(tmp) / "bin"
        target.mkdir()
        cmd = [str(go), "build", "-trimpath", "-o", str(target) + os.sep]
        cmd += [f"github.com/nsqio/nsq/apps/{p}" for p in PROGRAMS]
        retry(lambda: run_step(NAME, cmd, timeout=900, env=env, cwd=src), what="go build nsq")
        for p in PROGRAMS:
            if not os.access(target / p, os.X_OK):
                raise InstallError(NAME, f"go build made no {p}", command=cmd)
        if out.exists():
            shutil.rmtree(out)
        target.rename(out)  # atomic: a half-built cache is never seen
    return f"built nsqd and nsqlookupd {VERSION} with {go} into {out}"


def install() -> str:
    """Build and cache nsqd and nsqlookupd if missing (idempotent)."""
    with install_lock(NAME):
        if is_installed():
            return f"nsq {VERSION} already built ({bin_dir()})"
        return build()


def _create(work_dir: Path) -> Server | Cluster:
    return cluster(work_dir)


SPEC = ServerSpec(
    name=NAME,
    description=f"nsqd + nsqlookupd {VERSION} built from the Go module proxy",
    install=install,
    is_installed=is_installed,
    create=_create,
    start_timeout=15.0,
)
