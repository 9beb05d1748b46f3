"""Bulk: per-item outcomes, only retryable items sent again, never a partial success.

The item bookkeeping is pure logic (tested on replies built here); the rejected items
come from a real server (a value its mapping refuses)."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.clients._search._bulk import BulkError, BulkRun, parse_actions

from .conftest import INDEX, MakeClient


def _reply(*statuses: int) -> dict[str, Any]:
    items = []
    for i, status in enumerate(statuses):
        detail: dict[str, Any] = {"_index": "i", "_id": str(i), "status": status}
        if status >= 300:
            detail["error"] = {"type": "es_rejected_execution_exception" if status == 429
                               else "mapper_parsing_exception", "reason": "x"}
        items.append({"index": detail})
    return {"took": 1, "errors": any(s >= 300 for s in statuses), "items": items}


def _actions(n: int) -> list[Any]:
    body: list[Any] = []
    for i in range(n):
        body += [{"index": {"_index": "i", "_id": str(i)}}, {"n": i}]
    return body


def test_only_items_rejected_with_a_retryable_status_are_sent_again() -> None:
    run = BulkRun(parse_actions(_actions(3)))
    again = run.record(_reply(201, 429, 201))
    assert again == [1]
    run.pending = again
    assert run.body() == [{"index": {"_index": "i", "_id": "1"}}, {"n": 1}]
    assert run.record(_reply(201)) == []
    merged = run.outcome({})
    assert merged["errors"] is False
    assert [next(iter(i.values()))["status"] for i in merged["items"]] == [201, 201, 201]
    assert [item.attempts for item in run.items if item] == [1, 2, 1]


def test_a_partly_failed_bulk_is_never_a_success() -> None:
    run = BulkRun(parse_actions(_actions(3)))
    assert run.record(_reply(201, 400, 429)) == [2]  # 400: would fail the same way
    with pytest.raises(BulkError) as info:
        run.outcome({"service": "elasticsearch", "operation": "bulk"})
    failed = info.value.failed
    assert [(f.position, f.status) for f in failed] == [(1, 400), (2, 429)]
    assert "2 of 3 bulk items failed" in str(info.value)


def test_actions_parse_from_lists_and_ndjson_and_delete_has_no_source() -> None:
    text = '{"delete": {"_id": "1"}}\n{"index": {"_id": "2"}}\n{"n": 2}\n'
    assert parse_actions(text) == [({"delete": {"_id": "1"}}, None),
                                   ({"index": {"_id": "2"}}, '{"n": 2}')]  # sent as given
    assert len(parse_actions(text.encode())) == 2
    with pytest.raises(ValueError, match="no source line"):
        parse_actions([{"index": {}}])


def test_items_a_real_server_rejects_are_reported_and_the_rest_applied(
        driver: str, node: Any, make_client: MakeClient) -> None:
    client = make_client([node.url], timeout=3.0)
    body = [{"index": {"_index": INDEX, "_id": "b1"}}, {"n": 10},
            {"index": {"_index": INDEX, "_id": "b2"}}, {"n": "not a number"},
            {"delete": {"_index": INDEX, "_id": "b3"}}]
    key = "operations" if driver == "elasticsearch" else "body"
    with pytest.raises(BulkError) as info:
        client.bulk(refresh=True, **{key: body})
    statuses = [(item.position, item.status, item.ok) for item in info.value.items]
    assert statuses[0][1:] == (201, True) or statuses[0][1:] == (200, True)
    assert statuses[1][1] == 400 and not statuses[1][2]
    assert statuses[2][1:] == (404, True)  # delete of a missing document: an outcome
    assert len(info.value.failed) == 1
    assert info.value.failed[0].error["type"] in ("document_parsing_exception",
                                                  "mapper_parsing_exception")
    assert client.get(index=INDEX, id="b1")["_source"] == {"n": 10}
    ok = client.bulk(**{key: [{"index": {"_index": INDEX, "_id": "b4"}}, {"n": 4}]})
    assert ok["errors"] is False
