"""A tiny threaded TCP echo server on loopback for the fault tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

# The same echo as a process of its own, ``python -c ECHO_SCRIPT HOST PORT``: for tests
# that freeze the server or run it inside a network namespace.
ECHO_SCRIPT = """
import socket, sys, threading
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
def echo(c):
    while d := c.recv(65536):
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""


class EchoServer:
    """Echo every byte back on 127.0.0.1:<free port>; ``stop()`` closes everything.

    ``greeting`` (if given) is sent to each client as soon as it connects.
    """

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)  # accept wakes up to notice stop()
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="echo")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        # stop() may close conn before this thread first runs: OSError ends it quietly.
        with contextlib.suppress(OSError):
            conn.settimeout(0.5)
            if self.greeting:
                conn.sendall(self.greeting)
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                conn.sendall(data)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
        self._thread.join(2)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
