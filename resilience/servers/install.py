"""Helpers for server installers: cache directory, locks, retries, apt, binaries.

Every installer is idempotent (a second call finds what is there and returns at once),
caches what it builds under :func:`home` (``$RESILIENCE_HOME``, default
``~/.cache/resilience``), takes :func:`install_lock` so two processes installing the same
server at once do not clash, and retries steps that reach a registry, since a registry
hiccup should cost a retry, not a red run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from resilience.servers._errors import NotInstalledError, ServerError, install_command
from resilience.servers._process import stop_group

__all__ = [
    "InstallError",
    "apt_install",
    "apt_install_server",
    "find_binary",
    "home",
    "install_lock",
    "java17_home",
    "missing_debs",
    "retry",
    "run_step",
]

T = TypeVar("T")

_apt_updated = False
_apt_lock = threading.Lock()
_POLICY_RC = Path("/usr/sbin/policy-rc.d")
# Another process's apt (a second installer, unattended upgrades) holds dpkg's lock for a
# while: wait for it rather than fail at once.
_APT = ("apt-get", "-o", "DPkg::Lock::Timeout=300")


class InstallError(ServerError):
    """An install step failed; the message has the command and the tail of its output."""


def home() -> Path:
    """The cache directory: ``$RESILIENCE_HOME`` or ``~/.cache/resilience`` (created)."""
    root = os.environ.get("RESILIENCE_HOME")
    path = Path(root) if root else Path.home() / ".cache" / "resilience"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def install_lock(name: str, timeout: float = 1800.0) -> Iterator[None]:
    """Hold an exclusive file lock for installing ``name`` (across processes).

    Raises:
        InstallError: another process held it for longer than ``timeout`` seconds.
    """
    lock_dir = home() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with (lock_dir / f"{name}.lock").open("w") as fh:
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise InstallError(name, f"install lock busy for {timeout:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def java17_home() -> Path | None:
    """A Java 17 home: ``$RESILIENCE_JAVA_HOME``, else Debian's openjdk-17 or a Temurin 17
    under ``/usr/lib/jvm``; None when there is none (no network).

    Cassandra 5.0 and OpenSearch 2.19 need the security manager (gone in Java 24), so all
    the JVM servers but ZooKeeper run on Java 17. ``RESILIENCE_JAVA_HOME`` is not
    ``RESILIENCE_CASSANDRA_*``: that prefix belongs to the Cassandra client's options.
    """
    env = os.environ.get("RESILIENCE_JAVA_HOME")
    jvm = Path("/usr/lib/jvm")
    candidates = (
        [Path(env)]
        if env
        else [*sorted(jvm.glob("java-17-openjdk*")), *sorted(jvm.glob("temurin-17*"))]
    )
    for cand in candidates:
        java = cand / "bin" / "java"
        if java.is_file() and os.access(java, os.X_OK):
            return cand
    return None


def retry(fn: Callable[[], T], *, attempts: int = 3, delay: float = 5.0, what: str = "") -> T:
    """Call ``fn`` up to ``attempts`` times, ``delay``, ``2*delay``... seconds apart.

    Only :class:`InstallError` and OSError are retried; the last one is raised.
    """
    for i in range(1, attempts + 1):
        try:
            return fn()
        except (InstallError, OSError) as exc:
            if i == attempts:
                raise
            print(f"retry: {what or 'step'} failed (attempt {i}/{attempts}): {exc}".splitlines()[0])
            time.sleep(delay * i)
    raise AssertionError("unreachable")


def run_step(
    server: str,
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run one install command, bounded by ``timeout`` s; return its output.

    The command runs in its own process group with its output in a temporary file (not
    a pipe): on timeout the whole group is killed, so a grandchild (apt's dpkg, go's
    compilers) cannot keep the step alive by holding a pipe open.

    Raises:
        InstallError: non-zero exit, timeout or missing program, with the output's tail.
    """
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise InstallError(server, f"cannot run: {exc}", command=cmd) from exc
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, 5.0, reap=proc.poll)
            proc.wait(5.0)
            code = None
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    if code is None:
        raise InstallError(
            server, f"timed out after {timeout:.0f} s", command=cmd, log_tail=_tail(output)
        )
    if code != 0:
        raise InstallError(
            server, f"exited with status {code}", command=cmd, log_tail=_tail(output)
        )
    return output


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def missing_debs(packages: Sequence[str]) -> list[str]:
    """The Debian packages of ``packages`` that are not installed."""
    missing = []
    for pkg in packages:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if "install ok installed" not in done.stdout:
            missing.append(pkg)
    return missing


def apt_install(server: str, packages: Sequence[str]) -> str:
    """Install Debian ``packages`` that are missing: ``apt-get update`` once, then install.

    Services the packages would start (memcached on 11211) are held back with a
    temporary ``policy-rc.d``, as Docker images do, so nothing is left running.

    Returns:
        What was done, one line.
    Raises:
        InstallError: not root, or apt failed three times.
    """
    global _apt_updated
    if shutil.which("dpkg-query") is None:
        raise InstallError(
            server,
            "not a Debian system (no dpkg-query); install "
            + " ".join(packages)
            + " with your package manager",
        )
    missing = missing_debs(packages)
    if not missing:
        return f"Debian packages already installed: {' '.join(packages)}"
    if os.geteuid() != 0:
        raise InstallError(server, "needs root to run: apt-get install -y " + " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _apt_lock, _no_service_start():
        if not _apt_updated:
            retry(
                lambda: run_step(server, [*_APT, "update", "-qq"], timeout=600, env=env),
                what="apt-get update",
            )
            _apt_updated = True
        cmd = [*_APT, "install", "-y", "-qq", "--no-install-recommends", *missing]
        retry(lambda: run_step(server, cmd, timeout=900, env=env), what="apt-get install")
    return f"apt-get installed {' '.join(missing)}"


def apt_install_server(
    server: str,
    packages: Sequence[str],
    is_installed: Callable[[], bool],
    where: Callable[[], object],
) -> str:
    """Install a server that comes whole from Debian ``packages``; idempotent.

    Under :func:`install_lock`: nothing to do when ``is_installed()``; otherwise
    :func:`apt_install`, then ``is_installed()`` must hold.

    Args:
        where: what to name in the "already installed" line (its binary or jar).
    Raises:
        InstallError: apt failed, or it succeeded and the server is still missing.
    """
    with install_lock(server):
        if is_installed():
            return f"{server} already installed ({where()})"
        done = apt_install(server, packages)
        if not is_installed():
            raise InstallError(server, f"{done}, but {server} is still not installed")
        return done


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    if _POLICY_RC.exists():
        yield
        return
    _POLICY_RC.write_text("#!/bin/sh\n# resilience: no service starts during install\nexit 101\n")
    _POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC.unlink(missing_ok=True)


def find_binary(server: str, candidates: Sequence[str | Path]) -> Path:
    """The first candidate that is an executable file (bare names are looked up in PATH).

    Raises:
        NotInstalledError: none found; the message has the install command.
    """
    for cand in candidates:
        path = Path(cand) if os.sep in str(cand) else None
        if path is None:
            found = shutil.which(str(cand))
            path = Path(found) if found else None
        if path is not None and path.is_file() and os.access(path, os.X_OK):
            return path
    raise NotInstalledError(
        server,
        "not installed (looked for " + ", ".join(str(c) for c in candidates) + ")",
        install_hint=install_command(server),
    )
