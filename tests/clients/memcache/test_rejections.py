"""A rejected call does no I/O: counted at the fault proxy, not guessed from its speed.

Each test warms the client first, so a pooled connection is open: a rejection that
wrongly went ahead would write to it (bytes) or open a new one (a connection), and the
proxy's counters would show it. Every operation is tried, on both wrappers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import resilience
from resilience.errors import (
    BackendTimeoutError,
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    RejectedError,
)
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from .conftest import Client, MakeClient


def operations(cache: Client) -> dict[str, Callable[[], Any]]:
    return {
        "get": lambda: cache.get("k"),
        "gets": lambda: cache.gets("k"),
        "set": lambda: cache.set("k", b"v"),
        "add": lambda: cache.add("n", b"1"),
        "replace": lambda: cache.replace("k", b"v"),
        "cas": lambda: cache.cas("k", b"v", 1),
        "delete": lambda: cache.delete("k"),
        "incr": lambda: cache.incr("n"),
        "touch": lambda: cache.touch("k"),
        "get_many": lambda: cache.get_many(["k", "n"]),
        "set_many": lambda: cache.set_many({"k": b"v", "n": b"1"}),
        "delete_many": lambda: cache.delete_many(["k", "n"]),
    }


def setup(memcached: Any, fault_proxy: Callable[..., FaultProxy], make_client: MakeClient,
          **options: Any) -> tuple[FaultProxy, str, Client]:
    proxy = fault_proxy(memcached.address)
    address = f"{proxy.host}:{proxy.port}"
    cache = make_client([address], **options)
    assert cache.set("k", b"v", timeout=2.0) is True  # a connection now sits in the pool
    return proxy, address, cache


def assert_no_io(proxy: FaultProxy, cache: Client, rejection: type[RejectedError]) -> None:
    """Every operation raises ``rejection`` and the proxy sees no connection, no byte."""
    time.sleep(0.05)  # anything earlier calls sent has reached the counters
    before = proxy.counters()
    for name, call in operations(cache).items():
        try:
            call()
        except rejection:
            continue
        pytest.fail(f"{name} was not rejected with {rejection.__name__}")
    time.sleep(0.05)
    after = proxy.counters()
    assert (after.accepted, after.upstream_bytes) == (before.accepted, before.upstream_bytes)


def test_open_breaker_rejects_every_operation_without_io(
        memcached: Any, fault_proxy: Callable[..., FaultProxy], make_client: MakeClient) -> None:
    proxy, address, cache = setup(memcached, fault_proxy, make_client)
    cache.breaker(address).force_open()
    assert_no_io(proxy, cache, CircuitOpenError)


def test_spent_deadline_rejects_every_operation_without_io(
        memcached: Any, fault_proxy: Callable[..., FaultProxy], make_client: MakeClient) -> None:
    proxy, _, cache = setup(memcached, fault_proxy, make_client)
    with resilience.deadline(0):
        assert_no_io(proxy, cache, DeadlineExceededError)


@contextmanager
def call_in_flight(cache: Client, proxy: FaultProxy) -> Iterator[None]:
    """A ``get`` that holds the node's only bulkhead permit: its request reached the
    proxy, whose Blackhole keeps the reply; it times out after the block."""
    sent = proxy.counters().upstream_bytes
    errors: list[BaseException] = []
    with proxy.toxic(toxics.Blackhole()):
        if cache.loop is not None:
            loop = cache.loop
            task = loop.create_task(cache.cache.get("k", timeout=1.0))
            end = time.monotonic() + 2.0
            while proxy.counters().upstream_bytes == sent and time.monotonic() < end:
                loop.run_until_complete(asyncio.sleep(0.005))
            yield
            with pytest.raises(BackendTimeoutError):
                loop.run_until_complete(task)
        else:
            def run() -> None:
                try:
                    cache.get("k", timeout=1.0)
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            assert proxy.wait_until(lambda c: c.upstream_bytes > sent, timeout=2.0)
            yield
            thread.join(3.0)
            assert not thread.is_alive() and isinstance(errors[0], BackendTimeoutError)


def test_full_bulkhead_rejects_every_operation_without_io(
        memcached: Any, fault_proxy: Callable[..., FaultProxy], make_client: MakeClient) -> None:
    proxy, _, cache = setup(memcached, fault_proxy, make_client, bulkhead_max_concurrent=1,
                            bulkhead_max_wait=0.0, retry_attempts=1)
    with call_in_flight(cache, proxy):
        assert_no_io(proxy, cache, BulkheadFullError)
