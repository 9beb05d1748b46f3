"""Server: one real server process on loopback, or inside a network namespace (see
_base.py for the theory of operation)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from resilience.servers._errors import LOG_TAIL_LINES, ServerError, install_command
from resilience.servers._ports import port_in_use
from resilience.servers._process import (
    process_start_time,
    read_rss_bytes,
    signal_group,
    stop_group,
    wait_group_gone,
    wait_group_stopped,
)

__all__ = ["Server"]


class Server:
    """One server process on loopback (or in a namespace). Subclasses give ``command``
    and ``probe``.

    Args:
        name: label for logs and errors, e.g. ``"memcached-1"``.
        kind: the registry name (``"memcached"``), used for the install hint.
        data_dir: created if missing; holds data, config and the log.
        ports: named ports, e.g. ``{"client": 21211}``; the first one is :attr:`port`.
        host: the address it listens on (loopback by default).
        env: extra environment variables, added to :meth:`environment`.
        netns: the name of an existing network namespace (``ip netns``) to run the
            process in, with ``host`` one of that namespace's addresses; None runs it
            here. The harness only runs ``ip netns exec NAME``: creating the namespace
            (and its route to ``host``) is the caller's job, for example
            :class:`resilience.faults.netns.Namespace` (``.name``, ``.ns_ip``).

    Raises:
        ValueError: no ports, or a ``netns`` that is not a namespace name.
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
        netns: str | None = None,
    ) -> None:
        if not ports:
            raise ValueError(f"{name}: ports must name at least one port")
        if netns is not None and (
            not isinstance(netns, str) or not netns or "/" in netns or netns in (".", "..")
            or any(c.isspace() for c in netns)
        ):
            raise ValueError(
                f"{name}: netns={netns!r} is not a network namespace name (a non-empty"
                " name without '/' or spaces, as `ip netns list` shows it)"
            )
        self.netns = netns
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

    def launch_command(self) -> list[str]:
        """The argv :meth:`spawn` runs: :meth:`command`, under ``ip netns exec NAME``
        when the server has a ``netns`` (``ip`` execs the server, so the pid stays the
        server's own and freeze/stop signal it directly)."""
        cmd = self.command()
        if self.netns is None:
            return cmd
        return ["ip", "netns", "exec", self.netns, *cmd]

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
            "netns": self.netns,
            "pid": pid,
            "start_time": process_start_time(pid) if pid is not None else None,
            "data_dir": str(self.data_dir),
            "log_path": str(self.log_path),
            "command": self.launch_command(),
        }

    def error(self, problem: str, *, install_hint: str | None = None) -> ServerError:
        """A ServerError about this server, with its command and log tail."""
        try:
            cmd = self.launch_command()
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
        # report this server ready while it died on "address already in use". Ports of
        # another network namespace cannot be checked from here: skipped with a netns
        # (and port_in_use gives None for any address this namespace does not have).
        if self.netns is None:
            taken = [f"{k}={p}" for k, p in self.ports.items()
                     if p > 0 and port_in_use(p, self.host)]
            if taken:
                raise self.error(f"port already in use on {self.host}: {', '.join(taken)}")
        self.prepare()
        cmd = self.launch_command()
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
        """SIGKILL the whole process group at once (a crash, no clean shutdown), then wait
        (up to 10 s) until every process of it is gone: a child of the leader (a
        launcher's server JVM) dies a moment after the leader and holds the ports a
        restart needs until then."""
        proc = self._proc
        if proc is None:
            return
        signal_group(proc.pid, signal.SIGKILL)
        wait_group_gone(proc.pid, 10.0, reap=proc.poll)
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
        where = f" netns={self.netns}" if self.netns is not None else ""
        return f"<{type(self).__name__} {self.name} {self.address}{where} pid={self.pid} {state}>"
