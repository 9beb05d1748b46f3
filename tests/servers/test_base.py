"""The process harness: process groups, errors with log tails, ports, the registry."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from resilience.servers import _ports
from resilience.servers._base import (
    SERVERS,
    Cluster,
    Server,
    ServerError,
    get_spec,
    process_start_time,
)

from ._procs import proc_state


class _ShellServer(Server):
    """A process tree (shell + background child) that 'serves' once it wrote a file."""

    def __init__(self, data_dir: Path, script: str) -> None:
        super().__init__("shell", kind="memcached", data_dir=data_dir, ports={"p": 1})
        self.script = script

    def command(self) -> list[str]:
        return ["/bin/sh", "-c", self.script]

    def probe(self, timeout: float) -> bool:
        return (self.data_dir / "ready").exists()


def _alive(pid: int) -> bool:
    # a zombie is dead for our purpose: only its parent's wait() is missing
    return proc_state(pid) not in (None, "Z")


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    """stop() terminates the server and every process it forked."""
    server = _ShellServer(tmp_path, "sleep 300 & echo $! > child; touch ready; wait")
    server.start(5)
    child = int((tmp_path / "child").read_text())
    assert _alive(child)
    server.stop(timeout=2)
    assert not server.is_running()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_kill_returns_once_every_process_of_the_group_is_gone(tmp_path: Path) -> None:
    """kill() waits for the leader's children too (a launcher's JVM holds the ports)."""
    server = _ShellServer(tmp_path, "sleep 300 & echo $! > child; touch ready; wait")
    server.start(5)
    child = int((tmp_path / "child").read_text())
    server.kill()
    assert not server.is_running() and not _alive(child)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    """A process that ignores SIGTERM is killed after the stop timeout, not waited on forever."""
    server = _ShellServer(tmp_path, "trap '' TERM; touch ready; while :; do sleep 0.05; done")
    server.start(5)
    t0 = time.monotonic()
    server.stop(timeout=0.5)
    assert not server.is_running()
    assert time.monotonic() - t0 < 5


def test_stop_works_on_a_frozen_server(tmp_path: Path) -> None:
    """A frozen (SIGSTOPped) server still stops promptly."""
    server = _ShellServer(tmp_path, "touch ready; exec sleep 300")
    server.start(5)
    server.freeze()
    t0 = time.monotonic()
    server.stop(timeout=2)
    assert not server.is_running()
    assert time.monotonic() - t0 < 2.5


def test_early_exit_raises_server_error_with_command_and_log_tail(tmp_path: Path) -> None:
    """A server that dies while starting raises ServerError naming it, its command and its log."""
    server = _ShellServer(tmp_path, "echo 'fatal: bad config line 3' >&2; exit 3")
    with pytest.raises(ServerError) as info:
        server.start(5)
    text = str(info.value)
    assert "shell: exited with status 3" in text
    assert "command: /bin/sh -c" in text
    assert "fatal: bad config line 3" in text
    assert "python -m resilience servers install memcached" in text


def test_not_ready_in_time_raises_and_leaves_nothing_running(tmp_path: Path) -> None:
    """A server that never becomes ready fails after the timeout and is stopped."""
    server = _ShellServer(tmp_path, "echo waiting; exec sleep 300")
    with pytest.raises(ServerError, match=r"not ready after 0\.3 s") as info:
        server.start(0.3)
    assert "waiting" in info.value.log_tail
    assert not server.is_running()


def test_missing_program_raises_server_error(tmp_path: Path) -> None:
    """A command that cannot be executed raises ServerError, not a bare OSError."""

    class Missing(_ShellServer):
        def command(self) -> list[str]:
            return [str(tmp_path / "no-such-binary")]

    with pytest.raises(ServerError, match="cannot execute"):
        Missing(tmp_path, "").start(1)


def test_cluster_start_failure_stops_the_members_that_started(tmp_path: Path) -> None:
    """If one member cannot start, the others are stopped and the error is raised."""
    good = _ShellServer(tmp_path / "good", "touch ready; exec sleep 300")
    bad = _ShellServer(tmp_path / "bad", "exit 1")
    with pytest.raises(ServerError, match="exited with status 1"):
        Cluster("pair", [good, bad]).start(5)
    assert not good.is_running()


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    """free_ports hands out distinct ports that can be bound, outside the ephemeral range."""
    ports = _ports.free_ports(20)
    assert len(set(ports)) == 20
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(p < low for p in ports)
    for p in ports[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_port_is_free_sees_a_listener() -> None:
    """port_is_free is False for a port someone listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not _ports.port_is_free(s.getsockname()[1])


def test_unknown_server_name_lists_the_known_ones() -> None:
    """get_spec of an unknown name raises ValueError listing every registered name."""
    with pytest.raises(ValueError, match="unknown server 'redis'; known servers: memcached"):
        get_spec("redis")


def test_registry_names_the_six_servers() -> None:
    """The registry covers every datastore the library wraps."""
    assert set(SERVERS) == {
        "memcached", "zookeeper", "nsq", "cassandra", "elasticsearch", "opensearch"
    }  # fmt: skip


def test_process_start_time_tells_pid_reuse_apart() -> None:
    """process_start_time is stable for a live pid and None for a dead one."""
    me = os.getpid()
    assert process_start_time(me) == process_start_time(me) is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)
    assert process_start_time(pid) is None


def test_freeze_stops_and_thaw_resumes_the_group(tmp_path: Path) -> None:
    """freeze() puts the process group in stopped state; thaw() resumes it."""
    server = _ShellServer(tmp_path, "touch ready; exec sleep 300")
    server.start(5)
    try:
        assert server.pid is not None
        server.freeze()
        time.sleep(0.05)
        assert proc_state(server.pid) == "T"
        server.thaw()
        time.sleep(0.05)
        assert proc_state(server.pid) in ("S", "R")
    finally:
        server.stop()


def test_port_in_use_tells_taken_free_and_foreign_addresses_apart() -> None:
    """port_in_use: True for a listener, False for a free port, None for a non-local host."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert _ports.port_in_use(s.getsockname()[1]) is True
    assert _ports.port_in_use(_ports.free_port()) is False
    # TEST-NET-1 (RFC 5737) is assigned to no interface here
    assert _ports.port_in_use(12345, "192.0.2.1") is None


class _NsServer(Server):
    def __init__(self, data_dir: Path, netns: object) -> None:
        super().__init__("ns", kind="memcached", data_dir=data_dir, ports={"p": 1},
                         host="10.200.0.2", netns=netns)  # type: ignore[arg-type]

    def command(self) -> list[str]:
        return ["/bin/true"]


@pytest.mark.parametrize("bad", ["", "a/b", "has space", "..", 7])
def test_a_bad_netns_name_is_a_value_error_naming_it(tmp_path: Path, bad: object) -> None:
    """A netns that is not a namespace name fails at construction, quoting the value."""
    with pytest.raises(ValueError, match=r"netns=.*not a network namespace name"):
        _NsServer(tmp_path, bad)


def test_netns_runs_the_command_under_ip_netns_exec(tmp_path: Path) -> None:
    """With netns the launched argv is `ip netns exec NAME` + the server's own command;
    without it, the command alone."""
    server = _NsServer(tmp_path, "res-test-1")
    assert server.launch_command() == ["ip", "netns", "exec", "res-test-1", "/bin/true"]
    assert server.describe()["netns"] == "res-test-1"
    assert "netns=res-test-1" in repr(server)
    plain = _ShellServer(tmp_path, "true")
    assert plain.netns is None
    assert plain.launch_command() == plain.command()
