"""What the Elasticsearch and OpenSearch clients share (private: each client package
re-exports what its users need).

- :mod:`._options`: the options both register under their own names;
- :mod:`._http`: urllib3 pools that keep the deadline (total read time, bounded checkout);
- :mod:`._client`: nodes chosen by breaker, 429 back-pressure, errors by status, the
  idempotency table, the lazy driver;
- :mod:`._api`: the public methods (sync and asyncio);
- :mod:`._bulk`: per-item bulk outcomes and retries of the retryable items.

It imports no driver: urllib3 only, which both drivers depend on.
"""

from resilience.clients._search._api import AsyncSearchAPI, SearchAPI
from resilience.clients._search._bulk import RETRYABLE_ITEM_STATUS, BulkError, BulkItem
from resilience.clients._search._client import IDEMPOTENT, SearchBase
from resilience.clients._search._options import SearchOptions

__all__ = ["IDEMPOTENT", "RETRYABLE_ITEM_STATUS", "AsyncSearchAPI", "BulkError", "BulkItem",
           "SearchAPI", "SearchBase", "SearchOptions"]
