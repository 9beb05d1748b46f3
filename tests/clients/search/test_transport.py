"""The transport's gaps, closed: each test shows the raw driver's behaviour beside the
wrapper's, against a real server (through the fault proxy where a fault is needed)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest

from resilience.core.breaker import BreakerState
from resilience.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
)
from resilience.faults import toxics

from ..memcache.conftest import timed
from .conftest import BUDGET, INDEX, MakeClient, body_kw, raw_client


def _proxy(request: pytest.FixtureRequest) -> Any:
    server = request.getfixturevalue("node")
    return request.getfixturevalue("fault_proxy")((server.host, server.port))


def _url(proxy: Any) -> str:
    host, port = proxy.address
    return f"http://{host}:{port}"


def test_driver_retries_are_off_and_only_idempotent_calls_are_retried(
        driver: str, request: pytest.FixtureRequest, make_sync: MakeClient) -> None:
    """A reset connection: the raw driver (defaults) sends the request again on new
    connections without backoff; the wrapper sends an idempotent call twice (the core's
    retry) and an index without an id once."""
    proxy = _proxy(request)
    url = _url(proxy)
    raw = raw_client(driver, url)
    proxy.add(toxics.Reset(after_bytes=1))
    try:
        before = proxy.counters().accepted
        with pytest.raises(Exception):  # noqa: B017 (the driver's own ConnectionError)
            raw.get(index=INDEX, id="1")
        raw_connections = proxy.counters().accepted - before
        client = make_sync([url], timeout=1.0, breaker_enabled=False, retry_backoff=0.001)
        before = proxy.counters().accepted
        with pytest.raises(BackendUnavailableError):
            client.get(index=INDEX, id="1")
        get_connections = proxy.counters().accepted - before
        before = proxy.counters().accepted
        with pytest.raises(BackendUnavailableError):
            client.index(index=INDEX, **body_kw(driver, {"n": 2}))  # auto id
        auto_id_connections = proxy.counters().accepted - before
    finally:
        proxy.clear()
        raw.close()
    assert raw_connections == 4  # max_retries=3 by default
    assert get_connections == 2  # retry_attempts=2
    assert auto_id_connections == 1


def _trip_request_breaker(driver: str, url: str, limit: str | None) -> None:
    # A tiny request circuit-breaker limit makes the server answer 429 to a search with
    # an aggregation (circuit_breaking_exception): real back-pressure, on demand.
    raw = raw_client(driver, url, request_timeout=10)
    settings = {"transient": {"indices.breaker.request.limit": limit}}
    if driver == "elasticsearch":
        raw.cluster.put_settings(**settings)
    else:
        raw.cluster.put_settings(body=settings)
    raw.close()


def _agg_search(driver: str) -> dict[str, Any]:
    query = {"size": 0, "aggs": {"t": {"terms": {"field": "n"}}}}
    return {"index": INDEX, **(query if driver == "elasticsearch" else {"body": query})}


def test_429_is_back_pressure_retried_with_backoff_and_never_opens_the_breaker(
        driver: str, node: Any, make_sync: MakeClient) -> None:
    client = make_sync([node.url], timeout=0.5)  # room for slow 429s on a loaded machine
    breaker = client.breaker(node.url.split("://")[1])
    _trip_request_breaker(driver, node.url, "1b")
    try:
        outcomes = [timed(lambda: client.search(**_agg_search(driver))) for _ in range(6)]
        throttled = [e for _, e in outcomes if "throttled" in str(e)]
        for wall, error in outcomes:
            # A request the loaded JVM answers late is a timeout: rare, and still bounded.
            assert isinstance(error, BackendUnavailableError | BackendTimeoutError), error
            assert wall < 0.5 + 0.25
        assert len(throttled) >= 4, outcomes
        assert all(isinstance(e, BackendUnavailableError) for e in throttled)
        assert client.throttled >= 6  # each call backed off and tried again
        assert breaker.state(time.monotonic()) is BreakerState.CLOSED  # the node answered
        # Back-pressure that ends inside the budget: the call succeeds.
        # (A fresh client: the first one's retry budget was spent above, by design.)
        threading.Timer(0.3, _trip_request_breaker, (driver, node.url, None)).start()
        fresh = make_sync([node.url])
        result = fresh.search(timeout=3.0, **_agg_search(driver))
        assert fresh.throttled >= 1
        assert result["hits"]["total"]["value"] >= 1
    finally:
        _trip_request_breaker(driver, node.url, None)


def test_a_full_connection_pool_is_a_fast_rejection_not_an_unbounded_wait(
        driver: str, request: pytest.FixtureRequest, make_sync: MakeClient) -> None:
    """pool_size=1 and one slow call in flight: the raw driver's next call waits for the
    pooled connection outside its request timeout; the wrapper's is rejected at once."""
    proxy = _proxy(request)
    url = _url(proxy)
    client = make_sync([url], pool_size=1, timeout=1.0, breaker_enabled=False)
    client.get(index=INDEX, id="1")
    kw = {"connections_per_node": 1} if driver == "elasticsearch" else {"pool_maxsize": 1}
    raw = raw_client(driver, url, max_retries=0, **kw)
    raw.transport.perform_request("GET", f"/{INDEX}/_doc/1")
    if driver == "opensearch":  # opensearch-py's pool does not block by default
        raw.transport.connection_pool.connection.pool.block = True
    with proxy.toxic(toxics.Latency(latency_ms=400)):
        slow = threading.Thread(target=lambda: client.get(index=INDEX, id="1"))
        slow.start()
        time.sleep(0.1)
        elapsed, error = timed(lambda: client.get(index=INDEX, id="1"))
        assert isinstance(error, BulkheadFullError) and elapsed < 0.05, (elapsed, error)
        slow.join()
        slow = threading.Thread(target=lambda: raw.get(index=INDEX, id="1"))
        slow.start()
        time.sleep(0.1)
        start = time.monotonic()
        timed_raw = raw.options(request_timeout=BUDGET) if driver == "elasticsearch" else raw
        kw_timeout = {} if driver == "elasticsearch" else {"request_timeout": BUDGET}
        with contextlib.suppress(Exception):  # its read times out after the wait
            timed_raw.get(index=INDEX, id="1", **kw_timeout)
        raw_wait = time.monotonic() - start
        slow.join()
    raw.close()
    assert raw_wait > 2 * BUDGET  # waited for the busy connection past its timeout


def test_a_connect_timeout_is_a_timeout_bounded_by_the_budget(
        driver: str, connect_blackhole: tuple[str, int], make_sync: MakeClient) -> None:
    """SYNs dropped: opensearch-py calls this ConnectionError('N/A') and, by default,
    tries it four times; the wrapper raises BackendTimeoutError within the budget."""
    host, port = connect_blackhole
    url = f"http://{host}:{port}"
    client = make_sync([url], retry_attempts=1)
    outcomes = [timed(lambda: client.get(index=INDEX, id="1")) for _ in range(3)]
    for wall, error in outcomes:
        assert isinstance(error, BackendTimeoutError), error
        assert wall < BUDGET + 0.1
    if driver == "opensearch":
        from opensearchpy import ConnectionError as OSConnectionError
        from opensearchpy import OpenSearch

        assert type(outcomes[0][1].__cause__) is OSConnectionError  # type: ignore[union-attr]
        raw = OpenSearch(url, timeout=BUDGET, retry_on_timeout=False)
        start = time.monotonic()
        with pytest.raises(OSConnectionError):
            raw.get(index=INDEX, id="1")
        assert time.monotonic() - start > 3 * BUDGET  # retried despite retry_on_timeout=False
        raw.close()


def test_no_options_client_per_call_and_health_never_uses_the_root_endpoint(
        driver: str, node: Any, make_sync: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``options()`` costs ~160 us a call: the wrapper never calls it; ``health()`` asks
    ``_cluster/health`` (the Elasticsearch test distribution answers ``GET /`` with 405)."""
    if driver == "elasticsearch":
        from elasticsearch import Elasticsearch

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("options() on the hot path")

        monkeypatch.setattr(Elasticsearch, "options", refuse)
    client = make_sync([node.url], timeout=2.0)
    assert client.get(index=INDEX, id="1")["found"] is True
    assert client.health()["status"] in ("green", "yellow")


def test_run_hands_the_calls_deadline_to_the_code_it_runs(
        node: Any, make_client: MakeClient) -> None:
    """``run(fn)``: ``fn`` sees the call's deadline as the ambient one, so other clients
    it calls keep it (the pipeline sets none for the search clients' own attempts),
    sync and async (where ``fn`` runs on a worker thread)."""
    from resilience.core.deadline import DEADLINE

    client = make_client([node.url], timeout=2.0)
    before = time.monotonic()
    at, health = client.run(lambda raw: (DEADLINE.get(), raw.cluster.health()), timeout=0.5)
    after = time.monotonic()
    assert health["status"] in ("green", "yellow")
    assert at is not None and before + 0.5 <= at <= after + 0.5


def test_the_ambient_deadline_and_timeout_per_call_bound_the_request(
        request: pytest.FixtureRequest, make_sync: MakeClient) -> None:
    """Replies 300 ms late: a 1 s default budget is cut by ``resilience.deadline(0.1)``
    around the call, and by ``timeout=0.1`` on it."""
    import resilience

    proxy = _proxy(request)
    client = make_sync([_url(proxy)], timeout=1.0, retry_attempts=1, breaker_enabled=False)
    client.get(index=INDEX, id="1")
    with proxy.toxic(toxics.Latency(latency_ms=300)):
        with resilience.deadline(BUDGET):
            elapsed, error = timed(lambda: client.get(index=INDEX, id="1"))
        assert isinstance(error, BackendTimeoutError) and elapsed < BUDGET + 0.05, elapsed
        elapsed, error = timed(lambda: client.search(index=INDEX, timeout=BUDGET))
        assert isinstance(error, BackendTimeoutError) and elapsed < BUDGET + 0.05, elapsed
