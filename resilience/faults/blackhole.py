"""ConnectBlackhole: a loopback address whose connects hang, without root.

How it works (measured on Linux 6.x with the default ``tcp_abort_on_overflow=0``): a
listening socket with backlog 0 holds one completed connection in its accept queue;
nobody ever accepts it. While the queue is full the kernel silently drops every new
SYN, so a client's ``connect()`` gets no answer at all: it hangs until the client's own
timeout (``socket.timeout``/``TimeoutError`` at exactly that timeout), or, with no
timeout, for the kernel's SYN retries (``tcp_syn_retries=6``: about 127 s). That is the
``connect-blackhole`` fault mode, the same as ``iptables -j DROP`` on the SYN, and unlike
a closed port (refused at once).

The kernel may also accept one SYN beyond the nominal backlog, so :meth:`start` keeps
connecting filler sockets until one of them hangs, and checks that a further probe
hangs too before it returns.
"""

from __future__ import annotations

import contextlib
import socket
from types import TracebackType

from resilience.faults._addresses import check_address

__all__ = ["ConnectBlackhole"]

_PROBE_TIMEOUT = 0.05  # a loopback SYN/ACK takes microseconds; 50 ms of silence is a drop
_MAX_FILLERS = 8


class ConnectBlackhole:
    """An address on loopback where TCP connects hang until the client gives up.

    Use as a context manager (or ``start()``/``stop()``)::

        with ConnectBlackhole() as hole:
            socket.create_connection(hole.address, timeout=0.3)  # TimeoutError at 0.3 s

    Args:
        host: loopback address to listen on.

    Raises:
        ValueError: ``host`` is not loopback.
        RuntimeError: the kernel kept answering SYNs (a different overflow policy, e.g.
            ``tcp_abort_on_overflow=1`` makes connects fail with a reset instead).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = check_address(host, "connect blackhole host")
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> ConnectBlackhole:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.bind((self.host, 0))
        listener.listen(0)
        self._listener = listener
        self.port = listener.getsockname()[1]
        try:
            for _ in range(_MAX_FILLERS):
                if not self._connect_filler():
                    break
            else:
                raise RuntimeError(
                    f"connect blackhole {self.host}:{self.port}: the accept queue never "
                    f"filled after {_MAX_FILLERS} connects"
                )
            if self._connect_filler():
                raise RuntimeError(
                    f"connect blackhole {self.host}:{self.port}: a connect succeeded on a "
                    "full accept queue; check net.ipv4.tcp_abort_on_overflow"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _connect_filler(self) -> bool:
        """Connect one more socket; True if it connected (the queue had room)."""
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        s.settimeout(_PROBE_TIMEOUT)
        self._fillers.append(s)  # kept open: a hung SYN keeps retrying, harmlessly
        try:
            s.connect(self.address)
        except TimeoutError:
            return False
        except ConnectionError as exc:
            raise RuntimeError(
                f"connect blackhole {self.host}:{self.port}: a connect failed with {exc!r} "
                "instead of hanging; check net.ipv4.tcp_abort_on_overflow"
            ) from exc
        return True

    def stop(self) -> None:
        """Close the listener and the filler sockets; connects are refused afterwards."""
        for s in self._fillers:
            with contextlib.suppress(OSError):
                s.close()
        self._fillers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> ConnectBlackhole:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ConnectBlackhole({self.host}:{self.port})"
