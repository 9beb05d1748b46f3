"""The memcached wrapper on a healthy node: operations, laziness, config, errors, close."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilience.clients.memcache import IDEMPOTENT, Memcache
from resilience.core.deadline import deadline, remaining
from resilience.errors import BackendUnavailableError, ConfigError

Make = Callable[..., Memcache]


def test_every_operation_round_trips_against_real_memcached(memcached: Any,
                                                            make_cache: Make) -> None:
    cache = make_cache([memcached.address])
    assert cache.set("k", b"v") is True
    assert cache.get("k") == b"v"
    assert cache.get("absent", b"dflt") == b"dflt"
    assert cache.add("k", b"other") is False and cache.add("new", b"1") is True
    assert cache.replace("k", b"v2") is True and cache.replace("nope", b"x") is False
    value, token = cache.gets("k")
    assert value == b"v2"
    assert cache.cas("k", b"v3", token) is True and cache.cas("k", b"v4", token) is False
    assert cache.incr("new", 5) == 6 and cache.decr("new", 2) == 4
    assert cache.incr("no-counter") is None
    assert cache.touch("k", 100) is True and cache.touch("nope") is False
    assert cache.delete("k") is True and cache.delete("k") is False
    assert cache.set_many({"a": b"1", "b": b"2"}) == []
    assert cache.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    assert set(cache.gets_many(["a"])) == {"a"}
    assert cache.delete_many(["a", "b"]) is True and cache.get_many(["a", "b"]) == {}
    assert cache.run("append", "new", lambda c: c.append("new", b"0", noreply=False)) is True
    assert cache.get("new") == b"40"


def test_run_calls_the_function_under_the_calls_deadline(memcached: Any,
                                                         make_cache: Make) -> None:
    """The built-in operations leave the ambient deadline alone (their sockets get it
    directly); run() hands the caller's function the call's deadline as the ambient
    one, for any nested guarded call."""
    cache = make_cache([memcached.address], timeout=0.2)

    def fn(client: Any) -> float | None:
        client.version()
        return remaining()

    left = cache.run("version", "k", fn)
    assert left is not None and 0 < left <= 0.2
    left = cache.run("version", "k", fn, timeout=0.05)
    assert left is not None and 0 < left <= 0.05
    with deadline(0.03):
        left = cache.run("version", "k", fn, timeout=0.5)
    assert left is not None and 0 < left <= 0.03
    assert remaining() is None


def test_construction_opens_no_connection_and_first_call_connects(memcached: Any,
                                                                  fault_proxy: Any,
                                                                  make_cache: Make) -> None:
    proxy = fault_proxy(memcached.address)
    host, port = proxy.address
    cache = make_cache([f"{host}:{port}"])
    time.sleep(0.05)
    assert proxy.counters().accepted == 0
    cache.get("x")
    assert proxy.wait_until(lambda c: c.accepted == 1, timeout=2.0)


def test_writes_are_acknowledged_not_fire_and_forget(memcached: Any, fault_proxy: Any,
                                                     make_cache: Make) -> None:
    from resilience.faults.toxics import Blackhole

    proxy = fault_proxy(memcached.address)
    host, port = proxy.address
    cache = make_cache([f"{host}:{port}"], retry_attempts=1)
    cache.set("warm", b"1")
    with proxy.toxic(Blackhole(direction="downstream")), pytest.raises(TimeoutError):
        cache.set("lost", b"1")  # pymemcache's noreply default would say True here


def test_options_come_from_environment_and_named_instance() -> None:
    env = {
        "RESILIENCE_MEMCACHE_SERVERS": "127.0.0.1:1,127.0.0.1:2",
        "RESILIENCE_MEMCACHE_TIMEOUT_MS": "40",
        "RESILIENCE_MEMCACHE_SESSIONS_TIMEOUT_MS": "25",
        "RESILIENCE_MEMCACHE_FAIL_OPEN": "true",
    }
    plain = Memcache(environ=env)
    assert plain.endpoints == ("127.0.0.1:1", "127.0.0.1:2")
    assert plain.options.timeout == pytest.approx(0.04) and plain.options.fail_open
    named = Memcache(name="sessions", environ=env)
    assert named.options.timeout == pytest.approx(0.025)
    assert Memcache("127.0.0.1:9", timeout=0.5, environ=env).options.timeout == 0.5


@pytest.mark.parametrize(("env", "named"), [
    ({"RESILIENCE_MEMCACHE_TIMEOUT_MS": "fast"}, "RESILIENCE_MEMCACHE_TIMEOUT_MS"),
    ({"RESILIENCE_MEMCACHE_SERVERS": "localhost"}, "RESILIENCE_MEMCACHE_SERVERS"),
    ({"RESILIENCE_MEMCACHE_POOL_SIZE": "0"}, "RESILIENCE_MEMCACHE_POOL_SIZE"),
])
def test_bad_environment_value_raises_config_error_naming_the_variable(
        env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Memcache(environ=env)


def test_bad_argument_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        Memcache("127.0.0.1:1", timeout=-1, environ={})
    with pytest.raises(ConfigError, match="servers"):
        Memcache([], environ={})


def test_non_idempotent_operations_are_never_retried() -> None:
    for op in ("add", "cas", "incr", "decr", "append", "prepend"):
        assert IDEMPOTENT[op] is False
    for op in ("get", "gets", "get_many", "set", "delete", "touch"):
        assert IDEMPOTENT[op] is True


def test_close_wakes_a_call_blocked_on_a_frozen_node(memcached: Any, make_cache: Make) -> None:
    cache = make_cache([memcached.address], timeout=5.0)
    cache.get("warm")
    memcached.freeze()
    try:
        errors: list[BaseException] = []

        def blocked() -> None:
            try:
                cache.get("k")
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=blocked)
        start = time.monotonic()
        t.start()
        time.sleep(0.2)
        cache.close()
        t.join(2.0)
        assert not t.is_alive() and time.monotonic() - start < 1.0
        assert isinstance(errors[0], BackendUnavailableError)
        with pytest.raises(BackendUnavailableError, match="closed"):
            cache.get("k")
    finally:
        memcached.thaw()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_process_after_fork_uses_its_own_connections(memcached: Any, fault_proxy: Any,
                                                           make_cache: Make) -> None:
    proxy = fault_proxy(memcached.address)
    cache = make_cache([f"{proxy.host}:{proxy.port}"])
    cache.set("k", b"parent")
    assert proxy.wait_until(lambda c: c.accepted == 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = cache.get("k") == b"parent" and cache.set("k", b"child") is True
        except BaseException:
            ok = False
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    answer = os.read(r, 1)
    os.waitpid(pid, 0)
    os.close(r)
    assert answer == b"1"
    # The child connected anew: a socket shared with the parent would interleave replies.
    assert proxy.wait_until(lambda c: c.accepted == 2)
    assert cache.get("k") == b"child"  # the parent's own connection still works
    time.sleep(0.05)
    assert proxy.counters().accepted == 2


def test_importing_imports_no_driver_and_constructing_opens_no_socket_or_thread() -> None:
    # Construction imports the driver (so its ~40 ms is not paid inside the first call's
    # deadline) but connects nothing and starts nothing.
    import subprocess
    import sys

    code = (
        "import os, sys, threading, resilience.clients.memcache as m\n"
        "print('pymemcache' in sys.modules)\n"
        "m.Memcache('127.0.0.1:1', environ={})\n"
        "links = []\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        links.append(os.readlink('/proc/self/fd/' + fd))\n"
        "    except OSError:\n"
        "        pass  # the listing's own descriptor, closed by now\n"
        "sockets = sum(link.startswith('socket:') for link in links)\n"
        "print('pymemcache' in sys.modules, threading.active_count(), sockets)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.split() == ["False", "True", "1", "0"]

