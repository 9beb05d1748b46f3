"""``resilience servers ...`` as users run it: separate processes sharing a state file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from resilience.testing._server_fixtures import require_installed


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESILIENCE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "resilience", "servers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _gone(pid: int, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def test_unknown_name_is_a_usage_error_listing_known_servers(tmp_path: Path) -> None:
    """An unknown server name exits 2 and lists the known names."""
    done = _cli(tmp_path, "install", "redis")
    assert done.returncode == 2
    assert "unknown server 'redis'" in done.stderr
    assert "memcached, zookeeper, nsq, cassandra, elasticsearch, opensearch" in done.stderr


def test_install_is_idempotent_and_says_what_it_did(tmp_path: Path) -> None:
    """Installing an installed server succeeds at once and says it was already there."""
    require_installed("memcached")
    done = _cli(tmp_path, "install", "memcached")
    assert done.returncode == 0, done.stderr
    assert "memcached: memcached already installed" in done.stdout
    assert "install: 1/1 ok in" in done.stdout


def test_start_status_stop_across_processes(tmp_path: Path) -> None:
    """start leaves memcached running after the command exits; status sees it; stop ends it."""
    require_installed("memcached")
    started = _cli(tmp_path, "start", "memcached", "--json")
    assert started.returncode == 0, started.stderr
    report: dict[str, Any] = json.loads(started.stdout[started.stdout.index("{") :])
    member = report["memcached"]["running"][0]
    pid, port = member["pid"], member["ports"]["client"]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"version\r\n")
            assert sock.recv(64).startswith(b"VERSION ")
        again = _cli(tmp_path, "start", "memcached")
        assert "memcached: already running" in again.stdout
        status = _cli(tmp_path, "status", "memcached")
        assert f"pid={pid}" in status.stdout and "running" in status.stdout
    finally:
        stopped = _cli(tmp_path, "stop", "memcached")
    assert stopped.returncode == 0 and "memcached: stopped" in stopped.stdout
    assert _gone(pid)
    assert "not running" in _cli(tmp_path, "status", "memcached").stdout


def test_stop_of_a_server_not_started_says_so(tmp_path: Path) -> None:
    """Stopping a server that `start` did not start is harmless and says so."""
    done = _cli(tmp_path, "stop", "zookeeper")
    assert done.returncode == 0
    assert "zookeeper: not started" in done.stdout


@pytest.mark.parametrize("action", ["install", "start", "stop", "status"])
def test_every_action_has_help(tmp_path: Path, action: str) -> None:
    """Each action documents itself under --help."""
    done = _cli(tmp_path, action, "--help")
    assert done.returncode == 0
    assert "memcached" in done.stdout
