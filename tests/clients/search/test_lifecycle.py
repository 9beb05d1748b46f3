"""Async never blocks the loop; close wakes a blocked call; fork; no leaks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

from resilience.errors import BackendError, BackendUnavailableError
from resilience.faults import toxics

from ..memcache.conftest import open_fds, thread_count, timed
from .conftest import INDEX, MakeClient, wrapper_classes


def _proxied(request: pytest.FixtureRequest) -> tuple[Any, str]:
    server = request.getfixturevalue("node")
    proxy = request.getfixturevalue("fault_proxy")((server.host, server.port))
    host, port = proxy.address
    return proxy, f"http://{host}:{port}"


def test_async_calls_never_block_the_event_loop(driver: str,
                                                request: pytest.FixtureRequest) -> None:
    proxy, url = _proxied(request)
    _, async_cls = wrapper_classes(driver)

    async def main() -> tuple[int, float, Any]:
        client = async_cls([url], timeout=0.3, retry_attempts=1, environ={})
        await client.get(index=INDEX, id="1")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        proxy.add(toxics.Blackhole())
        start = time.monotonic()
        try:
            await client.get(index=INDEX, id="1")
            error = None
        except BackendError as exc:
            error = exc
        elapsed = time.monotonic() - start
        task.cancel()
        await client.aclose()
        return ticks, elapsed, error

    ticks, elapsed, error = asyncio.run(main())
    assert isinstance(error, BackendError) and elapsed < 0.3 + 0.1
    assert ticks >= 10  # the loop ran while the call waited


def test_close_wakes_a_blocked_call(request: pytest.FixtureRequest,
                                    make_sync: MakeClient) -> None:
    proxy, url = _proxied(request)
    client = make_sync([url], timeout=5.0, retry_attempts=1)
    client.get(index=INDEX, id="1")
    proxy.add(toxics.Blackhole())
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(
        timed(lambda: client.get(index=INDEX, id="1"))))
    worker.start()
    time.sleep(0.2)
    closed_at = time.monotonic()
    client.close()
    worker.join(2.0)
    assert not worker.is_alive() and time.monotonic() - closed_at < 0.5
    _, error = outcome[0]
    assert isinstance(error, BackendUnavailableError) and "closed" in str(error)


def test_a_forked_child_builds_its_own_connections(node: Any, make_sync: MakeClient) -> None:
    client = make_sync([node.url], timeout=2.0)
    assert client.get(index=INDEX, id="1")["found"]
    pid = os.fork()
    if pid == 0:  # the child: a fresh driver; the parent's sockets stay untouched
        try:
            ok = client.get(index=INDEX, id="1")["found"] and client.count(index=INDEX)
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.get(index=INDEX, id="1")["found"]  # the parent's connection still works


def test_no_threads_or_sockets_leak_after_many_faulted_calls(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    proxy, url = _proxied(request)
    client = make_client([url], timeout=0.05, breaker_enabled=False, retry_attempts=1)
    client.get(index=INDEX, id="1", timeout=2.0)
    threads, fds = thread_count(), open_fds()
    with proxy.toxic(toxics.Reset(after_bytes=1)):
        for _ in range(150):
            _, error = timed(lambda: client.get(index=INDEX, id="1"))
            assert isinstance(error, BackendError)
    time.sleep(0.1)
    assert thread_count() <= threads + 1
    assert open_fds() <= fds + 3
