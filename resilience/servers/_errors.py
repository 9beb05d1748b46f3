"""ServerError: a server could not be installed, started, probed or stopped."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LOG_TAIL_LINES", "NotInstalledError", "ServerError", "install_command"]

LOG_TAIL_LINES = 40


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
