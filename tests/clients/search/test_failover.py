"""A retry of an idempotent call goes to another node (docs/search.md#nodes-and-breakers).

The "nodes" are fault proxies in front of the session's one server: a bad one resets
every connection once the first byte of the request has passed (the server sees one
byte, so nothing is applied), a good one forwards. Every attempt on the bad node is a
connection of its own (a reset connection is never reused), so its ``accepted`` counter
is its attempt count; each node's breaker counts the attempts that went to it. Sync and
async (``make_client``), both drivers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from resilience.errors import BackendError, BackendTimeoutError, BackendUnavailableError
from resilience.faults import toxics
from resilience.faults.proxy import FaultProxy

from ..memcache.conftest import timed
from .conftest import DOC, INDEX, MakeClient, body_kw

# Writes go to an index of their own: other tests count the documents of INDEX.
WRITES = "failover-writes"
# Generous: no attempt here may end by the deadline unless the test says so, and the
# breakers stay closed (the tests count attempts, not rejections).
ROOMY: dict[str, Any] = {"timeout": 2.0, "breaker_minimum_calls": 100,
                         "breaker_window_size": 100}

Proxies = Callable[..., FaultProxy]


def _bad(node: Any, fault_proxy: Proxies) -> FaultProxy:
    proxy = fault_proxy((node.host, node.port))
    proxy.add(toxics.Reset(after_bytes=1, direction="upstream"))
    return proxy


def _url(proxy: FaultProxy) -> str:
    return f"http://{proxy.host}:{proxy.port}"


def _calls(client: Any, proxy: FaultProxy) -> int:
    """Attempts the breaker of ``proxy``'s node recorded."""
    snap = client.wrapped.breaker(f"{proxy.host}:{proxy.port}").snapshot(time.monotonic())
    return int(snap["calls"])


def test_a_read_that_fails_on_one_node_is_retried_on_the_other(
        make_client: MakeClient, driver: str, node: Any, fault_proxy: Proxies) -> None:
    bad, good = _bad(node, fault_proxy), fault_proxy((node.host, node.port))
    client = make_client([_url(bad), _url(good)], retry_attempts=2, **ROOMY)
    query: dict[str, Any] = {"query": {"match_all": {}}}
    for n in range(4):  # round robin: calls 0 and 2 start on the bad node
        if n % 2:
            reply = client.search(index=INDEX, **(query if driver == "elasticsearch"
                                                  else {"body": query}))
            assert reply["hits"]["total"]["value"] >= 1
        else:
            assert client.get(index=INDEX, id="1")["_id"] == "1"
    # One failed attempt per call that started there, never a retry on it.
    assert bad.counters().accepted == 2
    bad_snap = client.wrapped.breaker(f"{bad.host}:{bad.port}").snapshot(time.monotonic())
    assert (bad_snap["calls"], bad_snap["failures"]) == (2, 2), bad_snap
    assert _calls(client, good) == 4  # two first attempts and two retries, all answered


def test_with_one_node_the_retry_stays_on_it(
        make_client: MakeClient, node: Any, fault_proxy: Proxies) -> None:
    bad = _bad(node, fault_proxy)
    client = make_client([_url(bad)], retry_attempts=2, **ROOMY)
    _, error = timed(lambda: client.get(index=INDEX, id="1"))
    assert isinstance(error, BackendUnavailableError), error
    assert bad.counters().accepted == 2 and _calls(client, bad) == 2


def test_a_write_that_is_not_idempotent_is_not_retried_elsewhere(
        make_client: MakeClient, driver: str, node: Any, fault_proxy: Proxies) -> None:
    bad, good = _bad(node, fault_proxy), fault_proxy((node.host, node.port))
    client = make_client([_url(bad), _url(good)], retry_attempts=3, **ROOMY)
    doc_id = uuid.uuid4().hex
    # A fresh client's first call goes to the first node: the bad one.
    _, error = timed(lambda: client.create(index=WRITES, id=doc_id, **body_kw(driver, DOC)))
    assert isinstance(error, BackendUnavailableError), error  # transient, still not retried
    assert bad.counters().accepted == 1
    assert good.counters().accepted == 0 and _calls(client, good) == 0
    # An idempotent write in the same position (a fresh client) goes on to the good node.
    again = make_client([_url(bad), _url(good)], retry_attempts=3, **ROOMY)
    reply = again.index(index=WRITES, id=doc_id, **body_kw(driver, DOC))
    assert reply["result"] == "created", reply  # the failed create applied nothing
    assert bad.counters().accepted == 2 and _calls(again, good) == 1


def test_the_retries_share_the_calls_budget_across_nodes(
        make_client: MakeClient, node: Any, fault_proxy: Proxies) -> None:
    bad1, bad2 = _bad(node, fault_proxy), _bad(node, fault_proxy)
    good = fault_proxy((node.host, node.port))
    urls = [_url(bad1), _url(bad2), _url(good)]
    # The retry budget allows one retry in its window (floor 0.1/s x 10 s, no share of
    # calls): bad1 fails, the one retry goes to bad2 and fails, the next is refused. A
    # retry that got a fresh budget on the next node would reach the good one.
    tight = make_client(urls, retry_attempts=3, retry_budget_ratio=0.0,
                        retry_budget_min_per_second=0.1, **ROOMY)
    _, error = timed(lambda: tight.get(index=INDEX, id="1"))
    assert isinstance(error, BackendUnavailableError), error
    assert error.endpoint == f"{bad2.host}:{bad2.port}", error
    assert (bad1.counters().accepted, bad2.counters().accepted) == (1, 1)
    assert _calls(tight, good) == 0
    # The same call with the default budget skips both failed nodes and succeeds.
    roomy = make_client(urls, retry_attempts=3, **ROOMY)
    assert roomy.get(index=INDEX, id="1")["_id"] == "1"
    assert (bad1.counters().accepted, bad2.counters().accepted) == (2, 2)
    assert _calls(roomy, good) == 1


def test_a_retry_gets_no_fresh_deadline(
        make_client: MakeClient, node: Any, fault_proxy: Proxies) -> None:
    hole, good = fault_proxy((node.host, node.port)), fault_proxy((node.host, node.port))
    hole.add(toxics.Blackhole(direction="upstream"))
    client = make_client([_url(hole), _url(good)], retry_attempts=2,
                         **{**ROOMY, "timeout": 0.3})
    # The first attempt on the silent node spends the whole deadline: no retry fits,
    # so the good node is never tried and the call ends by its deadline.
    elapsed, error = timed(lambda: client.get(index=INDEX, id="1"))
    assert isinstance(error, BackendTimeoutError), error
    assert isinstance(error, BackendError) and not error.ambiguous
    assert elapsed < 0.3 + 0.25, elapsed
    assert _calls(client, good) == 0
