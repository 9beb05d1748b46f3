"""Bulk requests: per-item outcomes, the items worth sending again, and the error.

A bulk request is one HTTP call whose items succeed or fail one by one: a 200 reply with
``errors: true`` is a partial failure. The clients never return such a reply as a
success. They send again only the items that failed with a retryable status
(:data:`RETRYABLE_ITEM_STATUS`: the node was overloaded or a shard was unavailable, so
the item was not applied), within the call's deadline, and raise :class:`BulkError`
naming every item that still failed, with its status and reason. An item that failed
with any other status (a mapping error, a refused request) is not sent again: it
would fail the same way. A missing document (404) or a version conflict (409) is an
outcome, not a failure: reported in the items, it does not make the bulk fail.

Everything here is pure (no I/O), so it is tested without a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resilience.errors import BackendError

__all__ = ["OUTCOME_ITEM_STATUS", "RETRYABLE_ITEM_STATUS", "BulkError", "BulkItem", "BulkRun",
           "parse_actions"]

RETRYABLE_ITEM_STATUS = frozenset({429, 502, 503, 504})
"""Item statuses after which the item was not applied and may be sent again."""

OUTCOME_ITEM_STATUS = frozenset({404, 409})
"""Item statuses that are results, not failures: a delete or update of a missing
document, a create of one that exists or a version conflict (reported in ``items``)."""

_WITHOUT_SOURCE = frozenset({"delete"})

Action = tuple[dict[str, Any], Any]  # (action line, source line or None)


def _line(item: Any) -> Any:
    if isinstance(item, bytes | bytearray):
        item = item.decode()
    if isinstance(item, str):
        return json.loads(item)
    return item


def parse_actions(operations: Any) -> list[Action]:
    """Pair each action line with its source line (``delete`` has none).

    Accepts what both drivers accept: a list of dicts (or JSON strings or bytes), or one
    newline-delimited string or bytes.

    Raises:
        ValueError: a line is not an action (``index``, ``create``, ``update``,
            ``delete``), or an action lacks its source line.
    """
    if isinstance(operations, bytes | bytearray | str):
        text = operations.decode() if isinstance(operations, bytes | bytearray) else operations
        lines: Sequence[Any] = [ln for ln in text.splitlines() if ln.strip()]
    else:
        lines = list(operations)
    actions: list[Action] = []
    i = 0
    while i < len(lines):
        head = _line(lines[i])
        if not isinstance(head, Mapping) or len(head) != 1:
            raise ValueError(f"bulk line {i}: expected an action such as "
                             f"{{'index': {{...}}}}, got {head!r:.80}")
        kind = next(iter(head))
        if kind not in ("index", "create", "update", "delete"):
            raise ValueError(f"bulk line {i}: unknown action {kind!r}")
        if kind in _WITHOUT_SOURCE:
            actions.append((dict(head), None))
            i += 1
            continue
        if i + 1 >= len(lines):
            raise ValueError(f"bulk line {i}: the {kind!r} action has no source line")
        actions.append((dict(head), lines[i + 1]))
        i += 2
    return actions


def flatten(actions: Iterable[Action]) -> list[Any]:
    """The request body lines of ``actions``, in order."""
    body: list[Any] = []
    for head, source in actions:
        body.append(head)
        if source is not None:
            body.append(source)
    return body


def idempotent_actions(actions: Iterable[Action]) -> bool:
    """True when repeating every action leaves the same state (no auto id, no script)."""
    for head, source in actions:
        kind, meta = next(iter(head.items()))
        if kind == "index" and not (meta or {}).get("_id"):
            return False
        if kind == "update" and isinstance(_line(source), Mapping) and "script" in _line(source):
            return False
    return True


@dataclass
class BulkItem:
    """The outcome of one action of a bulk request."""

    position: int
    """Index of the action in the request (0-based, counting actions, not lines)."""
    action: str
    index: str | None
    id: str | None
    status: int
    error: Any
    """The server's reason (its ``error`` object) when the item failed, else None."""
    attempts: int

    @property
    def ok(self) -> bool:
        """Applied, or an outcome: a missing document (404) or a version conflict (409)."""
        return self.status < 300 or self.status in OUTCOME_ITEM_STATUS


class BulkError(BackendError):
    """Some items of a bulk request failed (after retrying those that may be retried).

    ``items`` holds every item's outcome, ``failed`` the failed ones, ``response`` the
    last reply. The items not in ``failed`` were applied.
    """

    detail = "bulk items failed"

    def __init__(self, items: list[BulkItem], response: Any, **context: Any) -> None:
        failed = [item for item in items if not item.ok]
        statuses: dict[int, int] = {}
        for item in failed:
            statuses[item.status] = statuses.get(item.status, 0) + 1
        counts = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
        first = failed[0] if failed else None
        reason = ""
        if first is not None and isinstance(first.error, Mapping):
            reason = f"; first: item {first.position} {first.error.get('type', '')}"
        super().__init__(f"{len(failed)} of {len(items)} bulk items failed ({counts}){reason}",
                         **context)
        self.items = items
        self.failed = failed
        self.response = response


class BulkRun:
    """The state of one bulk call across its rounds (the first send and the retries)."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions
        self.items: list[BulkItem | None] = [None] * len(actions)
        self.pending = list(range(len(actions)))
        self.rounds = 0
        self.first: Any = None
        self.first_raw: Any = None
        self.last: Any = None

    def body(self) -> list[Any]:
        """The lines to send in this round: the pending actions."""
        return flatten(self.actions[i] for i in self.pending)

    def record(self, response: Any) -> list[int]:
        """Take one round's reply; return the positions worth sending again.

        Raises:
            BackendError: the reply does not have one item per action sent.
        """
        self.rounds += 1
        raw, response = response, getattr(response, "body", response)  # ES: ObjectApiResponse
        if self.first is None:
            self.first, self.first_raw = response, raw
        self.last = response
        replies = response["items"]
        if len(replies) != len(self.pending):
            raise BackendError(f"bulk reply has {len(replies)} items for "
                               f"{len(self.pending)} actions")
        again = []
        for position, reply in zip(self.pending, replies, strict=True):
            kind, detail = next(iter(reply.items()))
            status = int(detail.get("status", 0))
            error = detail.get("error")
            self.items[position] = BulkItem(
                position, kind, detail.get("_index"), detail.get("_id"), status,
                error if (error is not None or status >= 300) else None, self.rounds)
            if status in RETRYABLE_ITEM_STATUS:
                again.append(position)
        return again

    def outcome(self, context: Mapping[str, Any]) -> Any:
        """The reply to return when every item succeeded; else raise BulkError.

        Raises:
            BulkError: an item failed for good, or was left unsent when time ran out.
        """
        items = [item for item in self.items if item is not None]
        if len(items) != len(self.items) or any(not item.ok for item in items):
            raise BulkError(items, self.last, **context)
        if self.rounds == 1:
            return self.first_raw
        merged = dict(self.first)
        merged["errors"] = False
        merged["items"] = [{i.action: {"_index": i.index, "_id": i.id, "status": i.status}}
                           for i in items]
        return merged
