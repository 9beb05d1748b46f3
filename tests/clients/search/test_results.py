"""Application outcomes are results, caller mistakes pass through, and the retry rule
follows the arguments (real servers, both drivers, sync and async)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from resilience.clients._search._api import _index_op, _update_op
from resilience.clients._search._client import IDEMPOTENT
from resilience.core.breaker import BreakerState
from resilience.errors import ConfigError

from .conftest import DOC, INDEX, MakeClient, body_kw, wrapper_classes


def _error_types(driver: str) -> tuple[type[Exception], type[Exception], type[Exception]]:
    if driver == "elasticsearch":
        from elasticsearch import BadRequestError, ConflictError, NotFoundError

        return NotFoundError, ConflictError, BadRequestError
    from opensearchpy import ConflictError as OSConflict
    from opensearchpy import NotFoundError as OSNotFound
    from opensearchpy import RequestError

    return OSNotFound, OSConflict, RequestError


def test_crud_through_the_drivers_own_api(driver: str, node: Any,
                                          make_client: MakeClient) -> None:
    client = make_client([node.url], timeout=2.0)
    assert client.get(index=INDEX, id="1")["_source"] == DOC
    assert client.index(index=INDEX, id="2", refresh=True, **body_kw(driver, {"n": 2}))[
        "result"] in ("created", "updated")
    assert client.exists(index=INDEX, id="2")
    assert client.count(index=INDEX)["count"] >= 2
    docs = client.mget(index=INDEX, **({"ids": ["1", "2"]} if driver == "elasticsearch"
                                       else {"body": {"ids": ["1", "2"]}}))["docs"]
    assert [d["found"] for d in docs] == [True, True]
    update = {"doc": {"n": 3}}
    client.update(index=INDEX, id="2", refresh=True,
                  **(update if driver == "elasticsearch" else {"body": update}))
    query = {"query": {"term": {"n": 3}}}
    hits = client.search(index=INDEX, **(query if driver == "elasticsearch"
                                         else {"body": query}))["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["2"]
    assert client.delete(index=INDEX, id="2", refresh=True)["result"] == "deleted"
    assert client.search(index=INDEX, timeout="1s")["timed_out"] is False  # server-side


def test_404_409_and_400_pass_through_and_never_count_against_the_node(
        driver: str, node: Any, make_client: MakeClient) -> None:
    client = make_client([node.url], timeout=2.0)
    not_found, conflict, bad_request = _error_types(driver)
    for _ in range(5):
        with pytest.raises(not_found):
            client.get(index=INDEX, id="no-such-doc")
        with pytest.raises(conflict):
            client.create(index=INDEX, id="1", **body_kw(driver, DOC))
        with pytest.raises(bad_request):
            client.search(index=INDEX, **({"query": {"bogus": {}}} if driver == "elasticsearch"
                                          else {"body": {"query": {"bogus": {}}}}))
    breaker = client.breaker(node.url.split("://")[1])
    assert breaker.state(time.monotonic()) is BreakerState.CLOSED
    assert breaker.snapshot(time.monotonic())["failures"] == 0


def test_the_operation_and_so_the_retry_rule_follows_the_arguments() -> None:
    assert _index_op({"id": "7"}) == "index" and IDEMPOTENT["index"]
    assert _index_op({}) == "index_auto_id" and not IDEMPOTENT["index_auto_id"]
    assert _update_op({"doc": {"n": 1}}) == "update" and IDEMPOTENT["update"]
    assert _update_op({"script": {"source": "ctx._source.n += 1"}}) == "update_script"
    assert _update_op({"body": {"script": "ctx._source.n += 1"}}) == "update_script"
    assert not IDEMPOTENT["update_script"] and not IDEMPOTENT["bulk"]
    assert not IDEMPOTENT["scroll"] and IDEMPOTENT["search"] and IDEMPOTENT["get"]


@pytest.mark.parametrize("driver_name", ["elasticsearch", "opensearch"])
def test_secrets_never_shown_and_no_io_at_construction(driver_name: str) -> None:
    sync, _ = wrapper_classes(driver_name)
    client = sync("http://127.0.0.1:1", username="u", password="hunter2",
                  api_key="c2VjcmV0", environ={})
    try:
        shown = repr(client) + repr(client.options)
        assert "hunter2" not in shown and "c2VjcmV0" not in shown
        assert client._driver.peek() is None  # nothing built, nothing opened
    finally:
        client.close()
    with pytest.raises(ConfigError) as info:
        sync("http://user:hunter2@127.0.0.1:9200", environ={})
    assert "hunter2" not in str(info.value)


def test_paging_with_a_point_in_time_and_search_after(driver: str, node: Any,
                                                      make_client: MakeClient) -> None:
    """A point in time plus search_after pages replay-safely (scroll is never retried)."""
    client = make_client([node.url], timeout=3.0)
    if driver == "elasticsearch":
        pit = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
        page = client.search(pit={"id": pit, "keep_alive": "1m"}, size=1,
                             sort=[{"_shard_doc": "asc"}])
        client.close_point_in_time(id=pit)
    else:
        pit = client.open_point_in_time(index=INDEX, keep_alive="1m")["pit_id"]
        page = client.search(body={"pit": {"id": pit, "keep_alive": "1m"}, "size": 1,
                                   "sort": [{"n": "asc"}]})
        client.close_point_in_time(body={"pit_id": [pit]})
    assert len(page["hits"]["hits"]) == 1 and page["hits"]["hits"][0]["sort"]
