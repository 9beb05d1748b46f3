"""The lazy driver: built once on first use, rebuilt after fork, released by close()."""

from __future__ import annotations

import os
import threading

import pytest

from resilience.clients._lazy import LazyDriver
from resilience.errors import BackendUnavailableError


class Thing:
    def __init__(self) -> None:
        self.closed = False


def test_construction_builds_nothing_and_first_get_builds_once() -> None:
    built: list[Thing] = []

    def factory() -> Thing:
        built.append(Thing())
        return built[-1]

    lazy = LazyDriver(factory, lambda t: None, service="x")
    assert built == [] and lazy.peek() is None
    assert lazy.get() is lazy.get()
    assert len(built) == 1


def test_concurrent_first_use_builds_a_single_driver() -> None:
    built: list[Thing] = []
    gate = threading.Barrier(8)

    def factory() -> Thing:
        built.append(Thing())
        return built[-1]

    lazy = LazyDriver(factory, lambda t: None, service="x")
    seen: list[Thing] = []

    def use() -> None:
        gate.wait()
        seen.append(lazy.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(built) == 1 and all(s is built[0] for s in seen)


def test_close_runs_closer_once_and_later_get_raises_unavailable() -> None:
    closed: list[Thing] = []
    lazy = LazyDriver(Thing, closed.append, service="memcache")
    thing = lazy.get()
    lazy.close()
    lazy.close()
    assert closed == [thing]
    with pytest.raises(BackendUnavailableError, match="closed"):
        lazy.get()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_after_fork_builds_a_new_driver_without_closing_the_parents() -> None:
    closed: list[Thing] = []
    lazy = LazyDriver(Thing, closed.append, service="x")
    parent = lazy.get()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it got a fresh driver and closed nothing
        ok = lazy.get() is not parent and closed == [] and lazy.get() is lazy.get()
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    answer = os.read(r, 1)
    os.waitpid(pid, 0)
    os.close(r)
    assert answer == b"1"
    assert lazy.get() is parent
