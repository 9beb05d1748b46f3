"""OpenSearch: :class:`OpenSearch` and :class:`AsyncOpenSearch` (opensearch-py).

Importing this package imports no driver: opensearch-py is imported when a client is
constructed. See docs/search.md.
"""

from resilience.clients._search import IDEMPOTENT, RETRYABLE_ITEM_STATUS, BulkError, BulkItem
from resilience.clients.opensearch._client import AsyncOpenSearch, OpenSearch, error_map
from resilience.clients.opensearch._options import OpenSearchOptions

__all__ = ["IDEMPOTENT", "RETRYABLE_ITEM_STATUS", "AsyncOpenSearch", "BulkError", "BulkItem",
           "OpenSearch", "OpenSearchOptions", "error_map"]
