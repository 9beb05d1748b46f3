"""pytest fixtures for real servers; re-exported by :mod:`resilience.testing.plugin`.

Fixtures:
    memcached            function scope: a fresh memcached node per test (starts in ms).
    memcached_cluster    function scope: three fresh memcached nodes.
    zookeeper            session scope: one standalone ZooKeeper.
    zookeeper_ensemble   session scope: a 3-member ensemble.
    nsq                  session scope: one nsqlookupd and two nsqd registered with it.
    real_server          session scope: ``real_server("cassandra")`` gives the started,
                         session-cached default topology of ANY registered server.
    fresh_server         function scope: ``fresh_server("zookeeper")`` gives a private
                         one, stopped after the test (for freeze/kill/restart tests).
    server_in_netns      function scope: ``server, ns = server_in_netns(Memcached)``
                         starts a server inside a fresh network namespace (for
                         firewall faults: ``ns.firewall``); both go after the test.

A server that is not installed skips the test, with the install command as the reason
(so does ``@pytest.mark.servers("name", ...)`` on a test that starts servers itself);
so does a missing Python driver, through ``require_driver(name, module)``.
With ``RESILIENCE_REQUIRE_SERVERS`` set to ``1``/``all`` (CI), or to a comma-separated
list of names, a missing required server fails the test instead. A server that is
installed but cannot start always fails the test (with its log tail): a broken server
is never silently skipped.

Session-scoped servers are shared: a test may freeze, kill or stop a member, and before
the next test an autouse fixture thaws or restarts it (a few ``poll()`` calls when all is
well), but tests that break servers on purpose should prefer ``fresh_server``,
``memcached`` or their own instance. Nothing here imports a driver.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from resilience.servers._base import SERVERS, Cluster, Server, ServerError, get_spec

__all__ = [
    "_resilience_heal_servers",
    "_resilience_session_servers",
    "fresh_server",
    "memcached",
    "memcached_cluster",
    "nsq",
    "real_server",
    "require_driver",
    "require_installed",
    "required_servers",
    "server_in_netns",
    "zookeeper",
    "zookeeper_ensemble",
]

ENV_REQUIRE = "RESILIENCE_REQUIRE_SERVERS"
Topology = Server | Cluster


def required_servers(environ: dict[str, str] | None = None) -> frozenset[str]:
    """Names of the servers that must not be skipped, from ``RESILIENCE_REQUIRE_SERVERS``.

    ``1``/``all``/``true``/``yes`` -> every registered server; empty or ``0`` -> none;
    otherwise a comma-separated list of names.

    Raises:
        ValueError: a name in the list is not a registered server.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_REQUIRE, "").strip().lower()
    if raw in ("", "0", "false", "no", "none"):
        return frozenset()
    if raw in ("1", "all", "true", "yes"):
        return frozenset(SERVERS)
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(SERVERS))
    if unknown:
        raise ValueError(
            f"{ENV_REQUIRE}={raw!r}: unknown server(s) {', '.join(unknown)}; "
            f"use 1, all, or names from: {', '.join(SERVERS)}"
        )
    return names


def _unavailable(name: str, reason: str) -> None:
    if name in required_servers():
        pytest.fail(f"{reason} ({ENV_REQUIRE} requires {name})", pytrace=False)
    pytest.skip(reason)


def require_installed(name: str) -> None:
    """Skip the calling test (or fail it, when required) unless ``name`` is installed."""
    try:
        spec = get_spec(name)
    except ServerError as exc:
        _unavailable(name, f"{name}: {exc.problem}")
        return
    if not spec.is_installed():
        _unavailable(
            name, f"{name} is not installed; run: python -m resilience servers install {name}"
        )


def require_driver(name: str, module: str) -> ModuleType:
    """Import and return ``module``, the Python driver the tests of server ``name`` use.

    Where it cannot be imported the calling test skips, or fails when
    ``RESILIENCE_REQUIRE_SERVERS`` requires ``name``: a missing driver hides a server's
    tests as surely as a missing server. Call it from a test or fixture (a module-level
    ``pytest.importorskip`` would skip even when the server is required).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _unavailable(name, f"{name}: the driver {module} cannot be imported ({exc}); "
                           "run: pip install -e '.[dev]'")
        raise  # not reached: _unavailable skips or fails


def _start(name: str, topology: Topology, timeout: float) -> Topology:
    try:
        topology.start(timeout)
    except ServerError as exc:
        pytest.fail(_start_failure(name, exc), pytrace=False)
    return topology


def _start_failure(name: str, exc: ServerError) -> str:
    return f"{name} is installed but did not start:\n{exc}"


def _heal(topology: Topology, timeout: float) -> None:
    """Thaw frozen members and restart dead ones, so a shared server is usable again."""
    members = topology.members if isinstance(topology, Cluster) else [topology]
    for member in members:
        if member.frozen:
            member.thaw()
        if not member.is_running():
            try:
                member.restart(timeout)
            except ServerError as exc:
                pytest.fail(f"a shared server was left dead and could not restart:\n{exc}")


class _SessionServers:
    """Started topologies cached by key for the session; stopped at its end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.root: Path | None = None  # made on first start: most sessions start nothing
        self.started: dict[str, tuple[Topology, float]] = {}
        self.failed: dict[str, str] = {}  # key -> why; a broken JVM is not retried per test
        self.lock = threading.Lock()

    def get(
        self, key: str, name: str, factory: Callable[[Path], Topology], timeout: float
    ) -> Topology:
        require_installed(name)
        with self.lock:
            if key in self.failed:
                pytest.fail(self.failed[key], pytrace=False)
            cached = self.started.get(key)
            if cached is None:
                if self.root is None:
                    self.root = self.tmp_path_factory.mktemp("servers")
                topology = factory(self.root / key)
                try:
                    topology.start(timeout)
                except ServerError as exc:
                    self.failed[key] = _start_failure(name, exc)
                    pytest.fail(self.failed[key], pytrace=False)
                self.started[key] = (topology, timeout)
                return topology
        _heal(cached[0], cached[1])
        return cached[0]

    def heal_all(self) -> None:
        """Before each test: undo what an earlier test left frozen or dead."""
        for topology, timeout in list(self.started.values()):
            _heal(topology, timeout)

    def stop_all(self) -> None:
        for topology, _ in self.started.values():
            topology.stop()
        self.started.clear()


_STASH_KEY = pytest.StashKey[_SessionServers]()


@pytest.fixture(scope="session")
def _resilience_session_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_SessionServers]:
    servers = _SessionServers(tmp_path_factory)
    request.config.stash[_STASH_KEY] = servers
    yield servers
    servers.stop_all()
    del request.config.stash[_STASH_KEY]


@pytest.fixture(autouse=True)
def _resilience_heal_servers(request: pytest.FixtureRequest) -> None:
    """Each test starts with the session's shared servers thawed and running.

    Also honours ``@pytest.mark.servers("name", ...)``: the test skips (or fails, when
    required) unless every named server is installed. Costs a few ``poll()`` calls when
    servers were started and nothing otherwise.
    """
    for marker in request.node.iter_markers("servers"):
        for name in marker.args:
            require_installed(str(name))
    servers = request.config.stash.get(_STASH_KEY, None)
    if servers is not None:
        servers.heal_all()


@pytest.fixture(scope="session")
def real_server(_resilience_session_servers: _SessionServers) -> Callable[[str], Topology]:
    """``real_server(name)``: the started default topology of a registered server, once a session.

    Skips (or fails when required) if the server is not installed.
    """

    def get(name: str) -> Topology:
        spec_timeout = 60.0
        try:
            spec = get_spec(name)
            spec_timeout = spec.start_timeout
        except ServerError:
            require_installed(name)  # skips or fails with the reason
            raise
        return _resilience_session_servers.get(name, name, spec.create, spec_timeout)

    return get


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Callable[[str], Topology]]:
    """``fresh_server(name)``: a private, started default topology, stopped after the test."""
    made: list[Topology] = []

    def get(name: str) -> Topology:
        require_installed(name)
        spec = get_spec(name)
        topology = spec.create(tmp_path / f"{name}-{len(made)}")
        made.append(topology)
        return _start(name, topology, spec.start_timeout)

    yield get
    for topology in made:
        topology.stop()


@pytest.fixture
def memcached(tmp_path: Path) -> Iterator[Any]:
    """A fresh memcached node (``.host``, ``.port``, ``.address``), stopped after the test."""
    require_installed("memcached")
    from resilience.servers.memcached import Memcached

    server = _start("memcached", Memcached(tmp_path / "memcached"), 10.0)
    yield server
    server.kill()  # memcached keeps nothing on disk; SIGTERM would cost ~0.7 s per test


@pytest.fixture
def memcached_cluster(tmp_path: Path) -> Iterator[Any]:
    """Three fresh memcached nodes (a Cluster: ``.members``, ``.addresses``)."""
    require_installed("memcached")
    from resilience.servers.memcached import cluster

    nodes = _start("memcached", cluster(tmp_path / "memcached", 3), 10.0)
    yield nodes
    nodes.kill()


@pytest.fixture(scope="session")
def zookeeper(_resilience_session_servers: _SessionServers) -> Any:
    """A standalone ZooKeeper for the whole session (``.address`` for kazoo's hosts)."""
    from resilience.servers.zookeeper import ZooKeeper

    return _resilience_session_servers.get("zookeeper", "zookeeper", ZooKeeper, 30.0)


@pytest.fixture(scope="session")
def zookeeper_ensemble(_resilience_session_servers: _SessionServers) -> Any:
    """A 3-member ZooKeeper ensemble for the session (``.hosts`` for kazoo)."""
    from resilience.servers.zookeeper import ensemble

    return _resilience_session_servers.get("zookeeper_ensemble", "zookeeper", ensemble, 60.0)


@pytest.fixture(scope="session")
def nsq(_resilience_session_servers: _SessionServers) -> Any:
    """One nsqlookupd and two nsqd for the session (an :class:`NsqCluster`)."""
    from resilience.servers.nsq import cluster

    return _resilience_session_servers.get("nsq", "nsq", cluster, 15.0)


@pytest.fixture
def server_in_netns(
    netns: Callable[..., Any], tmp_path: Path
) -> Iterator[Callable[..., tuple[Server, Any]]]:
    """Factory: ``server_in_netns(Memcached, **kwargs)`` -> ``(server, namespace)``.

    Creates a network namespace with the ``netns`` fixture, builds
    ``cls(data_dir, host=namespace.ns_ip, netns=namespace.name, **kwargs)`` and starts
    it (``start_timeout`` seconds, default 30). The server listens on the namespace's
    address, reachable from the test through the veth pair, so ``namespace.firewall``
    rules (REJECT, DROP, DROP of ESTABLISHED) hit only its traffic. Skips like the
    ``netns`` fixture where namespaces are unavailable (not root, no ``ip``/``iptables``)
    and like the other server fixtures where the server is not installed. The servers
    are killed after the test, before the namespaces are deleted.
    """
    made: list[Server] = []

    def start(cls: Callable[..., Server], *, start_timeout: float = 30.0,
              **kwargs: Any) -> tuple[Server, Any]:
        ns = netns()
        server = cls(tmp_path / f"netns-{len(made)}", host=ns.ns_ip, netns=ns.name, **kwargs)
        require_installed(server.kind)
        made.append(server)
        return _start(server.kind, server, start_timeout), ns  # type: ignore[return-value]

    yield start
    for server in made:
        server.kill()
