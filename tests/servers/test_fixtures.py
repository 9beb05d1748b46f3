"""The pytest fixtures: skip or fail by RESILIENCE_REQUIRE_SERVERS, session reuse and healing.

Skip-versus-fail is checked in a child pytest run, with a registered server named
``ghost`` (a real memcached underneath) whose installed state the child controls.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from resilience.servers._base import Cluster, Server
from resilience.testing._server_fixtures import (
    require_driver,
    require_installed,
    required_servers,
)

GHOST_MODULE = """
from resilience.servers._base import ServerSpec
from resilience.servers.memcached import Memcached

INSTALLED = {installed}

def create(work):
    return Memcached(work, name="ghost", threads={threads})

SPEC = ServerSpec(name="ghost", description="test double", install=lambda: "",
                  is_installed=lambda: INSTALLED, create=create, start_timeout=5.0)
"""

CONFTEST = """
import sys
sys.path.insert(0, {here!r})
from resilience.servers._base import SERVERS
SERVERS["ghost"] = "ghost_spec:SPEC"
"""

TESTS = """
import pytest

def test_one(real_server):
    real_server("ghost")

def test_two(real_server):
    real_server("ghost")

@pytest.mark.servers("ghost")
def test_three():
    pass
"""


def _pytest(target: Path, env: dict[str, str] | None = None) -> str:
    """Run pytest on ``target`` in a child process; return its output."""
    args = [sys.executable, "-m", "pytest", "-q", "-rsfE", "-o", "addopts="]
    # hypothesis' plugin costs seconds of import on a loaded machine; none is needed here
    args += ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", str(target)]
    done = subprocess.run(
        args,
        cwd=target if target.is_dir() else target.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout + done.stderr


def _outcomes(out: str) -> dict[str, int]:
    """Counts from the child's summary line, e.g. ``{"failed": 2, "error": 1}``."""
    counts = {}
    for num, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", out):
        counts[kind.rstrip("s") if kind.startswith("error") else kind] = int(num)
    return counts


def _child_pytest(tmp_path: Path, *, installed: bool, threads: int, require: str | None) -> str:
    ghost = GHOST_MODULE.format(installed=installed, threads=threads)
    (tmp_path / "ghost_spec.py").write_text(ghost)
    (tmp_path / "conftest.py").write_text(CONFTEST.format(here=str(tmp_path)))
    (tmp_path / "test_ghost.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "RESILIENCE_REQUIRE_SERVERS"}
    if require is not None:
        env["RESILIENCE_REQUIRE_SERVERS"] = require
    return _pytest(tmp_path, env)


def test_missing_server_skips_with_the_install_command(tmp_path: Path) -> None:
    """Without RESILIENCE_REQUIRE_SERVERS a missing server skips (fixture or marker), naming
    how to install it."""
    out = _child_pytest(tmp_path, installed=False, threads=2, require=None)
    assert _outcomes(out) == {"skipped": 3}
    assert "python -m resilience servers install ghost" in out


@pytest.mark.parametrize("require", ["1", "memcached,ghost"])
def test_missing_required_server_fails(tmp_path: Path, require: str) -> None:
    """When the server is required (all, or by name) a missing one fails the test instead."""
    out = _child_pytest(tmp_path, installed=False, threads=2, require=require)
    # the marker is checked in a fixture, so that test counts as an error
    assert _outcomes(out) == {"failed": 2, "error": 1}
    assert "RESILIENCE_REQUIRE_SERVERS requires ghost" in out


def test_requiring_other_servers_still_skips_this_one(tmp_path: Path) -> None:
    """A comma list that does not name the server leaves it skippable."""
    out = _child_pytest(tmp_path, installed=False, threads=2, require="memcached,nsq")
    assert _outcomes(out) == {"skipped": 3}


def test_installed_server_that_cannot_start_fails_once_per_session(tmp_path: Path) -> None:
    """A broken installed server fails every test that needs it, with its log, started only once."""
    out = _child_pytest(tmp_path, installed=True, threads=0, require=None)
    assert _outcomes(out) == {"failed": 2, "passed": 1}
    assert "Number of threads must be greater than 0" in out
    assert out.count("ghost: exited with status 1") >= 2  # the same cached failure


def test_installed_server_serves_the_session(tmp_path: Path) -> None:
    """An installed server is started once and both tests pass."""
    out = _child_pytest(tmp_path, installed=True, threads=2, require="1")
    assert _outcomes(out) == {"passed": 3}


def test_required_servers_parsing() -> None:
    """1/all mean every server, empty/0 none, otherwise a comma list of known names."""
    assert required_servers({"RESILIENCE_REQUIRE_SERVERS": "1"}) >= {"memcached", "cassandra"}
    assert required_servers({"RESILIENCE_REQUIRE_SERVERS": "all"}) >= {"nsq", "opensearch"}
    assert required_servers({}) == frozenset()
    assert required_servers({"RESILIENCE_REQUIRE_SERVERS": "0"}) == frozenset()
    assert required_servers({"RESILIENCE_REQUIRE_SERVERS": " memcached, nsq "}) == {
        "memcached", "nsq"
    }  # fmt: skip


@pytest.mark.parametrize(("require", "outcome"), [
    ("", "skip"), ("memcached", "skip"), ("cassandra", "fail"), ("memcached,cassandra", "fail"),
    ("1", "fail"),
])
def test_missing_driver_skips_or_fails_when_its_server_is_required(
    monkeypatch: pytest.MonkeyPatch, require: str, outcome: str
) -> None:
    """A driver that cannot be imported skips, unless RESILIENCE_REQUIRE_SERVERS names its
    server (or is 1): then the test fails."""
    monkeypatch.setenv("RESILIENCE_REQUIRE_SERVERS", require)
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match="no_such_driver_module"):
        require_driver("cassandra", "no_such_driver_module")


def test_require_driver_returns_the_module() -> None:
    assert require_driver("memcached", "pymemcache.client.base").Client is Client


def test_required_servers_rejects_unknown_names() -> None:
    """An unknown name is an error naming the variable and the known servers."""
    with pytest.raises(ValueError, match=r"RESILIENCE_REQUIRE_SERVERS='redis'.*memcached"):
        required_servers({"RESILIENCE_REQUIRE_SERVERS": "redis"})


def test_real_server_heals_a_frozen_or_killed_session_server(
    real_server: Callable[[str], Server | Cluster],
) -> None:
    """real_server thaws a frozen member and restarts a killed one on the same port."""
    server = real_server("memcached")
    assert isinstance(server, Server)
    server.freeze()
    assert real_server("memcached") is server and not server.frozen
    port = server.port
    server.kill()
    assert real_server("memcached") is server and server.is_running() and server.port == port
    client = Client((server.host, server.port), connect_timeout=1, timeout=1)
    try:
        assert client.set("k", b"v", noreply=False) and client.get("k") == b"v"
    finally:
        client.close()


def test_memcached_fixture_gives_each_test_a_fresh_node(memcached: Server) -> None:
    """The function-scoped memcached starts empty."""
    client = Client((memcached.host, memcached.port), connect_timeout=1, timeout=1)
    try:
        assert client.stats()[b"curr_items"] == 0
    finally:
        client.close()


def test_harness_modules_import_no_driver() -> None:
    """Importing the fixtures, the CLI and our server modules imports no datastore driver."""
    code = (
        "import sys\n"
        "import resilience.testing._server_fixtures, resilience.servers.cli\n"
        "import resilience.servers.memcached, resilience.servers.zookeeper\n"
        "import resilience.servers.nsq\n"
        "drivers = ('pymemcache', 'kazoo', 'nsq', 'tornado', 'cassandra', 'elasticsearch',"
        " 'opensearchpy')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(drivers)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


FRESH_TESTS = """
import os
from pathlib import Path

PIDS = Path(__file__).with_name("pids.txt")

def test_a(fresh_server, real_server):
    mine = fresh_server("memcached")
    assert mine is not real_server("memcached") and mine.is_running()
    PIDS.write_text(str(mine.pid))

def test_b():
    pid = int(PIDS.read_text())
    state = Path(f"/proc/{pid}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"
"""


def test_fresh_server_is_private_and_stopped_after_the_test(tmp_path: Path) -> None:
    """fresh_server gives a server of the test's own, gone once the test has finished."""
    require_installed("memcached")
    (tmp_path / "test_fresh.py").write_text(FRESH_TESTS)
    out = _pytest(tmp_path / "test_fresh.py")
    assert _outcomes(out) == {"passed": 2}, out


HEAL_TESTS = """
import socket

SHARED = []

def test_a_breaks_the_shared_servers(real_server, zookeeper):
    mc = real_server("memcached")
    SHARED.extend([mc, zookeeper])
    mc.kill()
    zookeeper.freeze()

def test_b_finds_them_working():
    mc, zk = SHARED
    for server in (mc, zk):
        assert server.is_running() and not server.frozen
    with socket.create_connection((mc.host, mc.port), timeout=2) as sock:
        sock.sendall(b"version\\r\\n")
        assert sock.recv(64).startswith(b"VERSION ")
    assert zk.mode(2.0) == "standalone"
"""


def test_shared_servers_are_healed_before_each_test(tmp_path: Path) -> None:
    """A session server one test killed or froze runs again, thawed, when the next test starts."""
    require_installed("memcached")
    require_installed("zookeeper")
    (tmp_path / "test_heal.py").write_text(HEAL_TESTS)
    out = _pytest(tmp_path / "test_heal.py")
    assert _outcomes(out) == {"passed": 2}, out
