"""Every rule of the error maps, produced by real memcached or the fault proxy.

The sync map is ``error_map()`` in resilience/clients/memcache/_sync.py, the async one
``ERRORS`` in _async.py (plus SERVER_ERROR -> BackendError). Each test checks the
error's exact type, its ``__cause__`` (the driver's exception: pymemcache's for the sync
wrapper; the stdlib's, or the offending reply in the message, for the async one) and
the endpoint and operation it names. Retries are off: the first attempt's error is
the one raised.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from pymemcache import exceptions as pm

from resilience.core.breaker import BreakerState
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from resilience.faults import toxics

from .conftest import Client, MakeClient
from .test_faults import free_port


@dataclass(frozen=True, kw_only=True)
class Reply(toxics.Toxic):
    """Replace each chunk of the server's reply with ``line``: a well-formed protocol
    line the client did not ask for."""

    kind: ClassVar[str] = "reply"
    line: bytes = b"HELLO\r\n"

    async def pipe(self, data: bytes, flow: toxics.Flow) -> bytes:
        return self.line


def check(error: BaseException, kind: type[BackendError], endpoint: str, operation: str,
          sync_cause: type[BaseException] | None, async_cause: type[BaseException] | None,
          client: Client, cause_text: str = "") -> None:
    """``error`` is exactly ``kind`` for ``endpoint``/``operation``, caused by the
    driver's exception of the client's flavour (whose message holds ``cause_text``)."""
    assert type(error) is kind, repr(error)
    assert error.endpoint == endpoint and error.operation == operation
    assert error.service == "memcache"
    cause = error.__cause__
    expected = async_cause if client.is_async else sync_cause
    assert cause is not None and not isinstance(cause, BackendError), repr(cause)
    if expected is not None:
        assert isinstance(cause, expected), repr(cause)
    assert cause_text in str(cause), repr(cause)


def proxy_to(request: pytest.FixtureRequest) -> tuple[Any, str]:
    server = request.getfixturevalue("memcached")
    proxy = request.getfixturevalue("fault_proxy")(server.address)
    return proxy, f"{proxy.host}:{proxy.port}"


def test_timeout_is_backend_timeout_caused_by_the_socket_timeout(
        memcached: Any, make_client: MakeClient) -> None:
    cache = make_client([memcached.address], retry_attempts=1)
    cache.get("warm", timeout=2.0)  # set-up: generous, the machine may be loaded
    memcached.freeze()
    try:
        with pytest.raises(BackendTimeoutError) as info:
            cache.get("k")
    finally:
        memcached.thaw()
    check(info.value, BackendTimeoutError, memcached.address, "get",
          TimeoutError, TimeoutError, cache)


def test_connection_closed_by_the_server_is_backend_unavailable(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    proxy, address = proxy_to(request)
    cache = make_client([address], retry_attempts=1)
    cache.set("k", b"value", timeout=2.0)
    with proxy.toxic(toxics.LimitData(limit_bytes=3)), \
            pytest.raises(BackendUnavailableError) as info:
        cache.get("k")  # "VAL", then the server's side closes
    check(info.value, BackendUnavailableError, address, "get",
          pm.MemcacheUnexpectedCloseError, asyncio.IncompleteReadError, cache)


def test_refused_is_backend_unavailable(make_client: MakeClient) -> None:
    address = f"127.0.0.1:{free_port()}"
    cache = make_client([address], retry_attempts=1)
    with pytest.raises(BackendUnavailableError) as info:
        cache.set("k", b"v")
    check(info.value, BackendUnavailableError, address, "set",
          ConnectionRefusedError, ConnectionRefusedError, cache)


def test_reset_is_backend_unavailable(request: pytest.FixtureRequest,
                                      make_client: MakeClient) -> None:
    proxy, address = proxy_to(request)
    cache = make_client([address], retry_attempts=1)
    cache.get("warm", timeout=2.0)
    with proxy.toxic(toxics.Reset(after_bytes=1)), \
            pytest.raises(BackendUnavailableError) as info:
        cache.get("k")
    check(info.value, BackendUnavailableError, address, "get",
          ConnectionResetError, ConnectionResetError, cache)


def test_a_reply_that_is_not_the_protocol_is_backend_protocol_error(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    proxy, address = proxy_to(request)
    cache = make_client([address])  # a protocol error is never retried anyway
    cache.get("warm", timeout=2.0)
    with proxy.toxic(Reply(line=b"HELLO WORLD\r\n")), \
            pytest.raises(BackendProtocolError) as info:
        cache.get("k")
    check(info.value, BackendProtocolError, address, "get",
          pm.MemcacheUnknownError, None, cache, "HELLO")


def test_server_error_is_backend_error(memcached: Any, make_client: MakeClient) -> None:
    # memcached's item size limit is 1 MB (-I): a bigger value gets
    # "SERVER_ERROR object too large for cache".
    cache = make_client([memcached.address], retry_attempts=1, timeout=2.0)
    with pytest.raises(BackendError) as info:
        cache.set("big", b"x" * (2 << 20))
    check(info.value, BackendError, memcached.address, "set",
          pm.MemcacheServerError, None, cache, "too large")
    assert cache.set("small", b"x") is True  # the node answers on: it was the value


def test_client_error_is_backend_protocol_error(memcached: Any,
                                                make_client: MakeClient) -> None:
    # memcached: "CLIENT_ERROR cannot increment or decrement non-numeric value".
    cache = make_client([memcached.address], timeout=2.0)
    cache.set("word", b"abc")
    with pytest.raises(BackendProtocolError) as info:
        cache.incr("word")
    check(info.value, BackendProtocolError, memcached.address, "incr",
          pm.MemcacheClientError, None, cache, "non-numeric")


ILLEGAL_KEYS = ["with space", "x" * 251, "tab\tkey"]
SYNC_CHECKS_KEYS_LATE = (
    "the sync wrapper lets pymemcache check a key inside the attempt, after the checkout "
    "(a check before it would cost every healthy call): on a node that is down the "
    "connect fails first, so the caller gets BackendUnavailableError, counted by the "
    "breaker, not ValueError"
)


@pytest.mark.parametrize("key", ILLEGAL_KEYS)
def test_illegal_key_is_value_error_sends_nothing_and_is_not_counted(
        key: str, request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    proxy, address = proxy_to(request)
    cache = make_client([address])
    cache.get("warm", timeout=2.0)  # a pooled connection a buggy check could write to
    kinds: list[str] = []
    cache.events.add_listener(lambda e: kinds.append(e.kind))
    time.sleep(0.05)
    before = proxy.counters().upstream_bytes
    for _ in range(6):  # more than the 4 calls after which the breaker judges
        with pytest.raises(ValueError) as info:
            cache.get(key)
        assert not isinstance(info.value, BackendError)
    if not cache.is_async:  # the async wrapper checks keys itself: there is no driver error
        assert isinstance(info.value.__cause__, pm.MemcacheIllegalInputError)
    time.sleep(0.05)
    assert proxy.counters().upstream_bytes == before
    assert "failure" not in kinds and "retry" not in kinds
    assert cache.breaker(address).state(time.monotonic()) is BreakerState.CLOSED
    assert cache.get("warm") is None


def test_illegal_key_touches_no_connection(request: pytest.FixtureRequest,
                                           make_client: MakeClient) -> None:
    proxy, address = proxy_to(request)
    cache = make_client([address])
    cache.get("warm", timeout=2.0)
    for key in ILLEGAL_KEYS:
        with pytest.raises(ValueError):
            cache.get(key)
    time.sleep(0.05)
    assert proxy.counters().accepted == 1  # the warm-up's connection, still pooled


def test_illegal_key_on_a_node_that_is_down_is_still_value_error(
        request: pytest.FixtureRequest, make_client: MakeClient) -> None:
    address = f"127.0.0.1:{free_port()}"
    cache = make_client([address])
    if not cache.is_async:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SYNC_CHECKS_KEYS_LATE))
    for _ in range(6):
        with pytest.raises(ValueError):
            cache.get("bad key")
    assert cache.breaker(address).state(time.monotonic()) is BreakerState.CLOSED
