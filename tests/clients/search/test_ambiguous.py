"""A failed write says whether it may have been applied (``BackendError.ambiguous``).

A write whose request may have reached the node (its reply timed out, or the connection
broke after sending) may still be applied: the error says so, and the core does not
retry it unless the operation is idempotent. A write that was refused before any byte
was sent, and every failed read, is not ambiguous.
"""

from __future__ import annotations

import socket
from typing import Any

from resilience.errors import BackendError, BackendTimeoutError
from resilience.faults import toxics

from ..memcache.conftest import timed
from .conftest import BUDGET, DOC, INDEX, MakeClient, body_kw

# The writes below are applied after their reply timed out: they go to an index of
# their own, so the documents other tests count in INDEX stay as seeded.
WRITES = "ambiguous-writes"


def _proxied(node: Any, fault_proxy: Any, toxic: toxics.Toxic) -> str:
    proxy = fault_proxy((node.host, node.port))
    proxy.add(toxic)
    host, port = proxy.address
    return f"http://{host}:{port}"


def test_a_timed_out_write_is_ambiguous_and_a_timed_out_read_is_not(
        driver: str, node: Any, fault_proxy: Any, make_sync: MakeClient) -> None:
    url = _proxied(node, fault_proxy, toxics.Latency(latency_ms=400))
    client = make_sync([url], retry_attempts=1, breaker_minimum_calls=100)
    writes = {
        "index with id": lambda: client.index(index=WRITES, id="amb", timeout=BUDGET,
                                              **body_kw(driver, DOC)),
        "index, auto id": lambda: client.index(index=WRITES, timeout=BUDGET,
                                               **body_kw(driver, DOC)),
        "delete": lambda: client.delete(index=WRITES, id="amb", timeout=BUDGET),
    }
    for name, write in writes.items():
        _, error = timed(write)
        assert isinstance(error, BackendTimeoutError), (name, error)
        assert error.ambiguous, f"{name}: a write whose reply timed out may be applied"
    _, error = timed(lambda: client.get(index=INDEX, id="1", timeout=BUDGET))
    assert isinstance(error, BackendTimeoutError) and not error.ambiguous, error


def test_a_write_reset_after_sending_is_ambiguous(
        driver: str, node: Any, fault_proxy: Any, make_sync: MakeClient) -> None:
    # The connection breaks once the request is on its way (the proxy resets after the
    # first bytes): the node may have read it all.
    url = _proxied(node, fault_proxy, toxics.Reset(after_bytes=1))
    client = make_sync([url], retry_attempts=1, breaker_minimum_calls=100)
    _, error = timed(lambda: client.index(index=WRITES, id="amb", timeout=BUDGET,
                                          **body_kw(driver, DOC)))
    assert isinstance(error, BackendError) and error.ambiguous, error


def test_a_refused_write_is_not_ambiguous(make_sync: MakeClient, driver: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_sync([f"http://127.0.0.1:{port}"], retry_attempts=1)
    _, error = timed(lambda: client.index(index=WRITES, id="amb", timeout=BUDGET,
                                          **body_kw(driver, DOC)))
    assert isinstance(error, BackendError) and not error.ambiguous, error
