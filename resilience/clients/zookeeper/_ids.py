"""k-sortable 64-bit IDs with a worker number claimed once in ZooKeeper (Snowflake).

Theory of operation
-------------------
An ID is ``timestamp << 22 | worker << 12 | sequence`` (default widths: 41 bits of
milliseconds since 2024-01-01 UTC, good for 69 years; 10 bits of worker, 1024
workers; 12 bits of sequence, 4096 IDs per millisecond and worker), as Twitter's
Snowflake and Hailo's cruftflake. IDs of one generator grow strictly; IDs of all
generators sort by time to the millisecond.

The worker number is claimed once, as an ephemeral node ``<path>/<number>`` of this
client's session: no two live sessions hold one number. After the claim,
:meth:`IdGenerator.next_id` never touches ZooKeeper: it reads the session's state and
epoch (two attributes) and the clock, a couple of microseconds. The moment the session
is not CONNECTED (SUSPENDED comes at 2/3 of the session timeout, before the server
expires the session and frees the number) it raises :class:`WorkerLostError` instead of
an ID; once CONNECTED again, the next call re-claims (the same number if the session
survived and its node is still ours, else a free one) within ``claim_timeout``.

Clock going backwards: the generator keeps the last timestamp it used and counts on
from it (borrowing the next millisecond when the sequence runs out), so IDs never
repeat or go down; if the clock is more than ``max_backwards`` behind that timestamp it
raises :class:`ClockMovedBackwardsError` rather than run ahead of time.

Not covered: two machines whose clocks differ by more than the session timeout, when
one takes over a number the other just lost, can issue overlapping IDs (the same
limit as Snowflake's).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from typing import TYPE_CHECKING

from resilience.clients.zookeeper._session import CONNECTED, Session
from resilience.core.deadline import deadline as deadline_scope
from resilience.errors import BackendUnavailableError, ResilienceError

if TYPE_CHECKING:
    from resilience.clients.zookeeper._sync import ZooKeeper

__all__ = ["EPOCH_MS", "ClockMovedBackwardsError", "IdGenerator", "WorkerLostError", "parse_id"]

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


class WorkerLostError(BackendUnavailableError):
    """The session that holds the worker number is not CONNECTED: no ID was made."""


class ClockMovedBackwardsError(ResilienceError):
    """The clock is further behind the last ID's timestamp than ``max_backwards``."""


def parse_id(value: int, worker_bits: int = 10, sequence_bits: int = 12) -> tuple[int, int, int]:
    """``(unix milliseconds, worker, sequence)`` of an ID."""
    sequence = value & ((1 << sequence_bits) - 1)
    worker = (value >> sequence_bits) & ((1 << worker_bits) - 1)
    return (value >> (sequence_bits + worker_bits)) + EPOCH_MS, worker, sequence


class IdGenerator:
    """Snowflake IDs for one process; see the module docstring.

    Args:
        zk: the client whose session holds the worker number.
        path: the parent of the worker nodes.
        worker_bits, sequence_bits: field widths (timestamp gets the rest of 63 bits).
        claim_timeout: bound of one claim (default: the client's timeout).
        max_backwards: how far (seconds) the clock may go back before
            :class:`ClockMovedBackwardsError`.
    """

    def __init__(self, zk: ZooKeeper, path: str, *, worker_bits: int = 10,
                 sequence_bits: int = 12, claim_timeout: float | None = None,
                 max_backwards: float = 1.0) -> None:
        if not 1 <= worker_bits <= 20 or not 1 <= sequence_bits <= 22:
            raise ValueError("worker_bits must be 1..20 and sequence_bits 1..22")
        self._zk, self.path = zk, path.rstrip("/")
        self._workers = 1 << worker_bits
        self._wshift, self._tshift = sequence_bits, sequence_bits + worker_bits
        self._seq_max = (1 << sequence_bits) - 1
        self._claim_timeout = claim_timeout or zk.options.timeout
        self._max_back_ms = int(max_backwards * 1000)
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._epoch = -1
        self.worker: int | None = None
        """The claimed worker number (None before the first claim)."""
        self._node: str | None = None
        self._last = 0
        self._seq = 0

    def claim(self, *, timeout: float | None = None) -> int:
        """Claim a worker number (or confirm the one held); returns it.

        Raises:
            ResilienceError: no number could be claimed within the timeout.
        """
        zk = self._zk
        with self._lock, deadline_scope(timeout or self._claim_timeout):
            session = zk.session
            zk.ensure_path(self.path)
            epoch = session.epoch
            if self._node is not None:  # the same session may still hold our number
                stat = zk.exists(self._node)
                if stat is not None and stat.ephemeralOwner == session.session_id:
                    self._session, self._epoch = session, epoch
                    return self.worker  # type: ignore[return-value]
            taken = {int(c) for c in zk.get_children(self.path) or () if c.isdigit()}
            free = [n for n in range(self._workers) if n not in taken]
            if not free:
                raise BackendUnavailableError(f"all {self._workers} worker numbers are taken",
                                              service="zookeeper", operation="claim")
            start = random.randrange(len(free))
            value = f"{socket.gethostname()}:{os.getpid()}".encode()
            from kazoo.exceptions import NodeExistsError
            for number in free[start:] + free[:start]:
                node = f"{self.path}/{number:04d}"
                try:
                    zk.create(node, value, ephemeral=True, protected=False)
                except NodeExistsError:
                    continue
                if session.epoch != epoch:  # disconnected meanwhile: not provably ours
                    break
                self._node, self.worker = node, number
                self._session, self._epoch = session, epoch
                return number
            raise BackendUnavailableError("no worker number could be claimed",
                                          service="zookeeper", operation="claim")

    def next_id(self) -> int:
        """A new ID; never touches ZooKeeper once a number is claimed.

        Raises:
            WorkerLostError: the session is not CONNECTED (no I/O attempted), or it
                changed and the re-claim failed.
            ClockMovedBackwardsError: see the module docstring.
        """
        session = self._session
        if session is None or session.epoch != self._epoch or session.state != CONNECTED:
            self._reclaim()
        now = time.time_ns() // 1_000_000 - EPOCH_MS
        with self._lock:
            last = self._last
            if now > last:
                last, seq = now, 0
            else:
                if last - now > self._max_back_ms:
                    raise ClockMovedBackwardsError(
                        f"the clock is {last - now} ms behind the last ID",
                        service="zookeeper", operation="next_id")
                seq = self._seq + 1
                if seq > self._seq_max:
                    last, seq = last + 1, 0  # borrow the next millisecond
            self._last, self._seq = last, seq
            return (last << self._tshift) | (self.worker << self._wshift) | seq  # type: ignore[operator]

    def _reclaim(self) -> None:
        session = self._session
        if session is not None and session.state != CONNECTED:
            raise WorkerLostError(
                f"worker {self.worker}: session {session.state.lower()}, no ID made",
                service="zookeeper", operation="next_id", endpoint=self._zk.endpoints[0])
        try:
            self.claim()
        except ResilienceError as exc:
            raise WorkerLostError(f"worker number could not be (re)claimed: {exc}",
                                  service="zookeeper", operation="next_id",
                                  endpoint=self._zk.endpoints[0]) from exc
