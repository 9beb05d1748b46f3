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

import contextlib
import importlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from resilience.servers._ports import port_is_free

__all__ = [
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
    "wait_group_stopped",
]

LOG_TAIL_LINES = 40

# name -> "module:ATTRIBUTE" holding that server's ServerSpec. Imported lazily.
SERVERS: dict[str, str] = {
    "memcached": "resilience.servers.memcached:SPEC",
    "zookeeper": "resilience.servers.zookeeper:SPEC",
    "nsq": "resilience.servers.nsq:SPEC",
    "cassandra": "resilience.servers.cassandra:SPEC",
    "elasticsearch": "resilience.servers.elasticsearch:SPEC",
    "opensearch": "resilience.servers.opensearch:SPEC",
}


def install_command(name: str) -> str:
    """The shell command that installs server ``name``."""
    return f"python -m resilience servers install {name}"


class ServerError(Exception):
    """A server could not be started, probed or stopped.

    The message names the server, the exact command, the tail of its log and how to
    install it; the same facts are attributes.
    """

    def __init__(
        self,
        server: str,
        problem: str,
        *,
        command: Sequence[str] = (),
        log_path: Path | None = None,
        log_tail: str = "",
        install_hint: str | None = None,
    ) -> None:
        self.server = server
        self.problem = problem
        self.command = list(command)
        self.log_path = log_path
        self.log_tail = log_tail
        self.install_hint = install_hint
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [f"{self.server}: {self.problem}"]
        if self.command:
            parts.append("command: " + subprocess.list2cmdline(self.command))
        if self.log_path is not None:
            parts.append(f"log: {self.log_path}")
        if self.log_tail:
            parts.append(f"last lines of the log:\n{self.log_tail.rstrip()}")
        if self.install_hint:
            parts.append(f"to install it: {self.install_hint}")
        return "\n".join(parts)


class NotInstalledError(ServerError):
    """The server's binaries are not on this machine; the message says how to install them."""


def read_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (VmRSS from /proc), or None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (field 22 of /proc/PID/stat) to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _group_pids(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (scans /proc)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def wait_group_stopped(pgid: int, timeout: float = 2.0) -> bool:
    """Wait until every thread of every process in group ``pgid`` is stopped (state T).

    ``kill(SIGSTOP)`` returns before a thread busy on another CPU has stopped: without
    this wait a request sent right after ``freeze()`` may still be served.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(_threads_stopped(pid) for pid in _group_pids(pgid)):
            return True
        time.sleep(0.002)
    return False


def _threads_stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone
    for tid in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
            return False
    return True


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` exists that is not a zombie.

    Zombies count as gone: a child re-parented to init waits for init to reap it, which
    in a container may take a second or more, and it holds nothing (no port, no file).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(_group_pids(pgid))


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_group(pgid: int, timeout: float, reap: Callable[[], object] | None = None) -> None:
    """SIGCONT + SIGTERM the group, wait up to ``timeout`` s, then SIGKILL and wait 5 s more.

    ``reap`` is called while waiting (``Popen.poll`` for our own child) so a zombie
    leader does not keep the group "alive".
    """
    # A frozen process cannot act on SIGTERM: wake it first.
    signal_group(pgid, signal.SIGCONT)
    if not signal_group(pgid, signal.SIGTERM):
        return
    for sig_deadline, sig in ((timeout, signal.SIGKILL), (5.0, None)):
        end = time.monotonic() + sig_deadline
        while time.monotonic() < end:
            if reap is not None:
                reap()
            if not _group_alive(pgid):
                return
            time.sleep(0.02)
        if sig is not None:
            signal_group(pgid, sig)


class Server:
    """One server process on loopback. Subclasses give ``command`` and ``probe``.

    Args:
        name: label for logs and errors, e.g. ``"memcached-1"``.
        kind: the registry name (``"memcached"``), used for the install hint.
        data_dir: created if missing; holds data, config and the log.
        ports: named ports, e.g. ``{"client": 21211}``; the first one is :attr:`port`.
        host: the address it listens on (loopback).
        env: extra environment variables, added to :meth:`environment`.
    """

    def __init__(
        self,
        name: str,
        *,
        kind: str,
        data_dir: Path,
        ports: Mapping[str, int],
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not ports:
            raise ValueError(f"{name}: ports must name at least one port")
        self.name = name
        self.kind = kind
        self.host = host
        self.ports: dict[str, int] = dict(ports)
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / f"{name}.log"
        self.extra_env: dict[str, str] = dict(env or {})
        self.frozen = False
        self.started_at: float | None = None  # monotonic, when the last start began
        self.ready_after: float | None = None  # seconds the last start took until ready
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what subclasses provide -------------------------------------------------------
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""
        raise NotImplementedError

    def probe(self, timeout: float) -> bool:
        """One readiness check through the real protocol, bounded by ``timeout`` seconds.

        Returns True when the server serves requests; False, or any exception (refused,
        timed out, the driver's own errors), while it does not yet.
        """
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files into ``data_dir`` before each start (idempotent)."""

    def environment(self) -> dict[str, str]:
        """The full environment of the process: a minimal base plus ``env``."""
        base = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.data_dir),
        }
        for key in ("JAVA_HOME", "GOPATH", "GOCACHE", "GOMODCACHE", "RESILIENCE_HOME"):
            if key in os.environ:
                base[key] = os.environ[key]
        base.update(self.extra_env)
        return base

    # --- facts ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The first (main client) port."""
        return next(iter(self.ports.values()))

    @property
    def address(self) -> str:
        """``host:port`` of the main client port."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id (also the process group id) while started, else None."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the process exists (running or frozen)."""
        return self._proc is not None and self._proc.poll() is None

    def rss_bytes(self) -> int | None:
        """Resident memory of the main process now, or None when not running."""
        pid = self.pid
        return read_rss_bytes(pid) if pid is not None and self.is_running() else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log ('' if there is none yet)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, Any]:
        """A JSON-able record (for the CLI state file and reports)."""
        pid = self.pid
        return {
            "name": self.name,
            "kind": self.kind,
            "host": self.host,
            "ports": dict(self.ports),
            "address": self.address,
            "pid": pid,
            "start_time": process_start_time(pid) if pid is not None else None,
            "data_dir": str(self.data_dir),
            "log_path": str(self.log_path),
            "command": self.command(),
        }

    def error(self, problem: str, *, install_hint: str | None = None) -> ServerError:
        """A ServerError about this server, with its command and log tail."""
        try:
            cmd = self.command()
        except Exception:  # the command itself may be what is broken (binary missing)
            cmd = []
        return ServerError(
            self.name,
            problem,
            command=cmd,
            log_path=self.log_path,
            log_tail=self.log_tail(),
            install_hint=install_hint or install_command(self.kind),
        )

    # --- lifecycle -----------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the process without waiting for readiness (see :meth:`start`)."""
        if self.is_running():
            raise self.error("already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A taken port must fail here: otherwise the probe may reach whoever holds it and
        # report this server ready while it died on "address already in use".
        taken = [
            f"{k}={p}" for k, p in self.ports.items() if p > 0 and not port_is_free(p, self.host)
        ]
        if taken:
            raise self.error(f"port already in use on {self.host}: {', '.join(taken)}")
        self.prepare()
        cmd = self.command()
        self.started_at = time.monotonic()
        self.ready_after = None
        self.frozen = False
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%H:%M:%S")
            log.write(f"--- {stamp} start: {subprocess.list2cmdline(cmd)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=self.environment(),
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise self.error(f"cannot execute: {exc}") from exc

    def wait_ready(self, timeout: float) -> None:
        """Probe until the server answers, bounded by ``timeout`` seconds.

        Raises:
            ServerError: the process exited, or it did not answer in time (it is stopped).
        """
        end = time.monotonic() + timeout
        last: BaseException | None = None
        pause = 0.005  # grows to 0.1 s: memcached is up in milliseconds, a JVM in seconds
        while True:
            if not self.is_running():
                code = self._proc.returncode if self._proc is not None else None
                raise self.error(f"exited with status {code} before it was ready")
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                if self.probe(min(1.0, max(0.05, left))):
                    if self.started_at is not None:
                        self.ready_after = time.monotonic() - self.started_at
                    return
                last = None
            except Exception as exc:  # refused while starting is normal: keep probing;
                last = exc  # anything else is reported with the timeout below
            time.sleep(min(pause, max(0.0, end - time.monotonic())))
            pause = min(0.1, pause * 2)
        self.stop()
        why = f" (last probe: {last!r})" if last is not None else ""
        raise self.error(f"not ready after {timeout:.1f} s{why}")

    def start(self, timeout: float = 30.0) -> Self:
        """Spawn the server and wait until :meth:`probe` answers.

        Raises:
            ServerError: it could not start (with command, log tail, install hint).
        """
        self.spawn()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL after ``timeout`` s; idempotent."""
        proc = self._proc
        if proc is None:
            return
        stop_group(proc.pid, timeout, reap=proc.poll)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, no clean shutdown)."""
        proc = self._proc
        if proc is None:
            return
        signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        self.frozen = False

    def restart(self, timeout: float = 30.0) -> Self:
        """Stop (if running) and start again on the same ports with the same data."""
        self.stop()
        return self.start(timeout)

    def freeze(self) -> None:
        """SIGSTOP the process group: the kernel still accepts connections, nobody answers."""
        if not self.is_running():
            raise self.error("cannot freeze: not running")
        pgid = self._proc.pid  # type: ignore[union-attr]
        signal_group(pgid, signal.SIGSTOP)
        self.frozen = True
        if not wait_group_stopped(pgid):
            raise self.error("SIGSTOP sent but some threads still run after 2 s")

    def thaw(self) -> None:
        """SIGCONT the process group after :meth:`freeze`."""
        if self._proc is not None:
            signal_group(self._proc.pid, signal.SIGCONT)
        self.frozen = False

    @contextlib.contextmanager
    def frozen_for(self) -> Iterator[None]:
        """Context manager: frozen inside the block, thawed after it (even on error)."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else ("running" if self.is_running() else "stopped")
        return f"<{type(self).__name__} {self.name} {self.address} pid={self.pid} {state}>"


class Cluster:
    """Several servers run as one topology; members start in parallel by default.

    Subclasses override :meth:`start` to order starts, or :meth:`wait_ready` for a
    cluster-wide check (quorum).
    """

    def __init__(self, name: str, members: Sequence[Server]) -> None:
        if not members:
            raise ValueError(f"{name}: a cluster needs at least one member")
        self.name = name
        self.members: list[Server] = list(members)

    @property
    def kind(self) -> str:
        return self.members[0].kind

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of each member's main port."""
        return [m.address for m in self.members]

    def __iter__(self) -> Iterator[Server]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> Server:
        return self.members[index]

    @staticmethod
    def start_parallel(members: Sequence[Server], timeout: float) -> None:
        """Start ``members`` at once (one thread each); on any failure stop them all.

        Raises:
            ServerError: the first member that failed, with its log tail.
        """
        errors: list[BaseException] = []
        threads = []
        for member in members:

            def run(m: Server = member) -> None:
                try:
                    m.start(timeout)
                except BaseException as exc:  # carried to the caller's thread
                    errors.append(exc)

            t = threading.Thread(target=run, name=f"start-{member.name}", daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout + 30.0)  # start() bounds itself; the slack covers stop()
        if errors or any(t.is_alive() for t in threads):
            for m in members:
                m.stop()
            if errors:
                raise errors[0]
            raise ServerError(members[0].name, f"start did not return within {timeout + 30:.0f} s")

    def start(self, timeout: float = 60.0) -> Self:
        """Start every member in parallel and wait until each is ready."""
        self.start_parallel(self.members, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every member (in parallel, so N slow shutdowns cost one)."""
        threads = [
            threading.Thread(target=m.stop, args=(timeout,), daemon=True) for m in self.members
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 10.0)

    def kill(self) -> None:
        for m in self.members:
            m.kill()

    def is_running(self) -> bool:
        """True when every member runs."""
        return all(m.is_running() for m in self.members)

    def rss_bytes(self) -> int | None:
        sizes = [m.rss_bytes() for m in self.members]
        return sum(s for s in sizes if s is not None) if any(s is not None for s in sizes) else None

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.members]

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.members!r}>"


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
