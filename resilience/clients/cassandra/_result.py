"""Results: one page of rows, and the way to the next page under a fresh budget.

The driver's ResultSet fetches page 2 and later synchronously when iterated, and the
driver arms no timer for those pages: a page that never comes blocks forever. So the
driver's ResultSet never reaches the caller. :class:`Result` holds one page; iterating
it fetches the next pages through the client, each page a call of its own (operation
``page``) with the call's ``timeout`` as its budget, clamped by any ambient deadline
(``with resilience.deadline(...)`` bounds the whole iteration).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

__all__ = ["AsyncResult", "Result"]


_new = object.__new__


class _Page:
    __slots__ = ("_client", "_flight", "_rs", "_timeout")
    _client: Any
    _flight: Any
    _rs: Any
    _timeout: float | None

    @classmethod
    def of(cls, client: Any, answer: tuple[Any, Any], timeout: float | None) -> Any:
        """The page of an attempt's ``(flight, ResultSet)`` answer.

        Built without an ``__init__``: a Python frame entered from C on every call
        costs more than the four stores (0.8k instructions, measured).
        """
        page = _new(cls)
        page._client = client
        page._flight, page._rs = answer
        page._timeout = timeout
        return page

    @property
    def coordinator(self) -> str:
        """``address:port`` of the host that answered."""
        _, _, index, _, _, _ = self._flight  # (future, host, host_index, ...)
        return self._client._endpoints[index]  # type: ignore[no-any-return]

    @property
    def rows(self) -> list[Any]:
        """The rows of this page (named tuples by default)."""
        return self._rs.current_rows  # type: ignore[no-any-return]

    @property
    def column_names(self) -> list[str] | None:
        """The columns of the rows, when the statement returns rows."""
        return self._rs.column_names  # type: ignore[no-any-return]

    @property
    def paging_state(self) -> bytes | None:
        """Where the next page starts (``execute(..., paging_state=)``); None at the end."""
        return self._rs.paging_state  # type: ignore[no-any-return]

    @property
    def has_more_pages(self) -> bool:
        """Whether a next page exists."""
        return bool(self._rs.paging_state)

    @property
    def was_applied(self) -> bool:
        """For a conditional write (``IF``, ``IF NOT EXISTS``): whether it was applied.

        An LWT that was not applied is a result, not an error: the row's current values
        are in :attr:`rows`.
        """
        return bool(self._rs.was_applied)

    def one(self) -> Any:
        """The first row of this page, or None."""
        rows = self._rs.current_rows
        return rows[0] if rows else None

    def _next_request(self) -> Any:
        from resilience.clients.cassandra._common import Request

        _, _, _, _, _, req = self._flight  # (..., request)
        return Request(req.statement, req.params, "page", True, self._rs.paging_state)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {len(self.rows)} rows from {self.coordinator}"
                f"{', more pages' if self.has_more_pages else ''}>")


class Result(_Page):
    """One page of a statement's rows (sync); iterate it for every row of every page."""

    def next_page(self) -> Result | None:
        """The next page (a call of its own, bounded by the call's timeout), or None."""
        if not self.has_more_pages:
            return None
        return self._client._page(self._next_request(), self._timeout)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Any]:
        page: Result | None = self
        while page is not None:
            yield from page.rows
            page = page.next_page()

    def all(self) -> list[Any]:
        """Every row of every page (each page fetched under its own budget)."""
        return list(self)


class AsyncResult(_Page):
    """One page of a statement's rows (asyncio); ``async for`` gives every row."""

    async def next_page(self) -> AsyncResult | None:
        """The next page (a call of its own, bounded by the call's timeout), or None."""
        if not self.has_more_pages:
            return None
        return await self._client._apage(self._next_request(), self._timeout)  # type: ignore[no-any-return]

    async def __aiter__(self) -> AsyncIterator[Any]:
        page: AsyncResult | None = self
        while page is not None:
            for row in page.rows:
                yield row
            page = await page.next_page()

    async def all(self) -> list[Any]:
        """Every row of every page (each page fetched under its own budget)."""
        return [row async for row in self]
