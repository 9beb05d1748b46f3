"""Cluster: several servers started in parallel and stopped together."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Self

from resilience.servers._errors import ServerError
from resilience.servers._server import Server

__all__ = ["Cluster"]


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
