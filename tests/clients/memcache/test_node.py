"""DeadlineSocket: every read and write of a call ends by the call's deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from resilience.clients.memcache._node import DeadlineSocket


@pytest.fixture
def pair() -> Iterator[tuple[DeadlineSocket, socket.socket]]:
    """A DeadlineSocket connected to a plain socket over loopback."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        ours = DeadlineSocket(socket.AF_INET, socket.SOCK_STREAM)
        ours.settimeout(5.0)
        ours.connect(listener.getsockname())
        peer, _ = listener.accept()
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def test_a_read_past_the_deadline_raises_without_reading(pair: tuple[DeadlineSocket,
                                                                     socket.socket]) -> None:
    """recv after the deadline raises TimeoutError and leaves the data in the socket."""
    ours, peer = pair
    peer.sendall(b"x")
    ours.set_deadline(time.monotonic() - 0.001)
    with pytest.raises(TimeoutError):
        ours.recv(10)
    ours.set_deadline(time.monotonic() + 1.0)
    assert ours.recv(10) == b"x"


def test_a_timeout_longer_than_the_budget_is_rearmed_to_it(pair: tuple[DeadlineSocket,
                                                                       socket.socket]) -> None:
    """With 5 s armed and 50 ms left, a silent peer makes recv fail after about 50 ms."""
    ours, _ = pair
    ours.set_deadline(time.monotonic() + 0.05)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ours.recv(10)
    assert time.monotonic() - start < 1.0
    assert ours.armed is not None and ours.armed <= 0.05


def test_a_timeout_shorter_than_the_budget_is_rearmed_to_it(pair: tuple[DeadlineSocket,
                                                                        socket.socket]) -> None:
    """A socket armed for 10 ms serves a later call with a 2 s budget: its reply after
    200 ms is read, not cut at the old 10 ms."""
    ours, peer = pair
    ours.settimeout(0.01)
    ours.set_deadline(time.monotonic() + 2.0)
    timer = threading.Timer(0.2, peer.sendall, (b"late",))
    timer.start()
    try:
        assert ours.recv(10) == b"late"
    finally:
        timer.cancel()


def test_a_slow_drip_cannot_outrun_the_deadline(pair: tuple[DeadlineSocket,
                                                            socket.socket]) -> None:
    """A byte every 20 ms keeps each recv short, yet reading ends by the 150 ms deadline."""
    ours, peer = pair
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.02):
            try:
                peer.sendall(b".")
            except OSError:
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    ours.set_deadline(time.monotonic() + 0.15)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            while time.monotonic() - start < 5.0:  # bounded even if the deadline were ignored
                ours.recv(1)
        assert time.monotonic() - start < 1.0
    finally:
        stop.set()
        dripper.join(2.0)


def test_without_a_deadline_only_the_armed_timeout_applies(pair: tuple[DeadlineSocket,
                                                                       socket.socket]) -> None:
    """A socket never given a deadline reads and writes like a plain socket."""
    ours, peer = pair
    ours.sendall(b"ping")
    assert peer.recv(10) == b"ping"
    peer.sendall(b"pong")
    assert ours.recv(10) == b"pong"
