"""Install helpers: the cross-process lock, retries, bounded steps, clear missing-binary errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilience.servers._base import NotInstalledError
from resilience.servers.install import (
    InstallError,
    apt_install,
    apt_install_server,
    find_binary,
    home,
    install_lock,
    retry,
    run_step,
)


def test_home_follows_resilience_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$RESILIENCE_HOME sets the cache directory, which is created on demand."""
    monkeypatch.setenv("RESILIENCE_HOME", str(tmp_path / "cache"))
    assert home() == tmp_path / "cache" and home().is_dir()


def test_install_lock_excludes_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds a server's install lock, taking it times out with an error."""
    monkeypatch.setenv("RESILIENCE_HOME", str(tmp_path))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from resilience.servers.install import install_lock\n"
            "with install_lock('demo'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(InstallError, match="install lock busy"), install_lock("demo", 0.3):
            pass
        assert time.monotonic() - t0 < 3
        with install_lock("other", 0.3):  # a different server's lock is free
            pass
    finally:
        holder.kill()
        holder.wait(5)
    with install_lock("demo", 2.0):  # released when the holder died
        pass


def test_retry_retries_install_errors_then_succeeds() -> None:
    """retry calls again after an InstallError and returns the first success."""
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise InstallError("demo", "registry hiccup")
        return "done"

    assert retry(flaky, attempts=3, delay=0.0) == "done"
    assert len(calls) == 3


def test_retry_gives_up_after_the_last_attempt() -> None:
    """After the last attempt the error propagates; other exceptions are not retried."""
    calls = []

    def broken() -> None:
        calls.append(1)
        raise InstallError("demo", "still down")

    with pytest.raises(InstallError, match="still down"):
        retry(broken, attempts=2, delay=0.0)
    assert len(calls) == 2

    def bug() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry(bug, attempts=3, delay=0.0)
    assert len(calls) == 3


def test_run_step_failure_carries_command_and_output() -> None:
    """A failing step raises InstallError with the exit status, the command and its output."""
    with pytest.raises(InstallError) as info:
        run_step("demo", ["/bin/sh", "-c", "echo no such package >&2; exit 100"], timeout=10)
    text = str(info.value)
    assert "exited with status 100" in text
    assert "/bin/sh -c" in text
    assert "no such package" in text


def test_run_step_is_bounded_by_its_timeout_even_with_grandchildren() -> None:
    """A hung step is stopped at its timeout with its whole process tree, and reported."""
    t0 = time.monotonic()
    with pytest.raises(InstallError, match="timed out after") as info:
        # the grandchild `sleep` inherits the output: it must not keep the step alive
        run_step("demo", ["/bin/sh", "-c", "echo started; sleep 30; true"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert "started" in info.value.log_tail


def test_find_binary_error_names_the_install_command(tmp_path: Path) -> None:
    """A missing binary raises NotInstalledError saying where it looked and how to install."""
    with pytest.raises(NotInstalledError) as info:
        find_binary("nsq", [tmp_path / "nsqd", "no-such-program-here"])
    text = str(info.value)
    assert str(tmp_path / "nsqd") in text and "no-such-program-here" in text
    assert "python -m resilience servers install nsq" in text


def test_find_binary_finds_path_programs_and_files() -> None:
    """Bare names are looked up in PATH; paths must be executable files."""
    assert find_binary("demo", ["/no/such/sh", "sh"]).name == "sh"
    assert find_binary("demo", ["/bin/sh"]) == Path("/bin/sh")


def test_apt_install_of_installed_packages_touches_no_network() -> None:
    """Packages already installed are reported as such, with no apt-get run."""
    query = ["dpkg-query", "-W", "-f=${Status}", "bash"]
    done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    if "install ok installed" not in done.stdout:
        pytest.skip("not a Debian system")
    t0 = time.monotonic()
    assert apt_install("demo", ["bash", "coreutils"]) == (
        "Debian packages already installed: bash coreutils"
    )
    assert time.monotonic() - t0 < 5


def test_apt_install_server_returns_at_once_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed server is reported with its location; apt is not consulted."""
    monkeypatch.setenv("RESILIENCE_HOME", str(tmp_path))
    line = apt_install_server("demo", ["no-such-package"], lambda: True, lambda: "/bin/demo")
    assert line == "demo already installed (/bin/demo)"


def test_apt_install_server_fails_when_apt_did_not_bring_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the packages are there but the server still is not, that is an InstallError."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    monkeypatch.setenv("RESILIENCE_HOME", str(tmp_path))
    with pytest.raises(InstallError, match="demo is still not installed"):
        apt_install_server("demo", ["bash"], lambda: False, lambda: "")
