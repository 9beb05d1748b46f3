"""The shared wrapper parts: lazy driver, fork safety, error mapping, idempotency tables."""

from __future__ import annotations

import os
import threading

import pytest

from resilience.clients._errormap import ErrorMap, idempotency_table
from resilience.clients._lazy import LazyDriver
from resilience.errors import BackendTimeoutError, BackendUnavailableError


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


def test_error_map_takes_the_first_matching_rule_and_keeps_the_context() -> None:
    table = ErrorMap([
        (TimeoutError, BackendTimeoutError, "timed out"),
        (OSError, BackendUnavailableError, "socket error"),
    ])
    err = table.translate(TimeoutError("x"), service="s", endpoint="h:1", operation="get")
    assert isinstance(err, BackendTimeoutError)
    assert (err.service, err.endpoint, err.operation) == ("s", "h:1", "get")
    assert isinstance(table.translate(ConnectionResetError(), service="s", endpoint=None,
                                      operation="get"), BackendUnavailableError)
    plain = KeyError("k")
    assert table.translate(plain, service="s", endpoint=None, operation="get") is plain


def test_error_map_refuses_a_rule_shadowed_by_an_earlier_one() -> None:
    with pytest.raises(ValueError, match="unreachable"):
        ErrorMap([(OSError, BackendUnavailableError, "os"),
                  (TimeoutError, BackendTimeoutError, "timeout")])


def test_idempotency_table_is_read_only_and_checks_values() -> None:
    table = idempotency_table({"get": True})
    with pytest.raises(TypeError):
        table["get"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        idempotency_table({"get": 1})  # type: ignore[dict-item]
