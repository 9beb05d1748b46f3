"""Elasticsearch: :class:`Elasticsearch` and :class:`AsyncElasticsearch` (elasticsearch-py 8).

Importing this package imports no driver: elasticsearch-py is imported when a client
is constructed. See docs/search.md.
"""

from resilience.clients._search import IDEMPOTENT, RETRYABLE_ITEM_STATUS, BulkError, BulkItem
from resilience.clients.elasticsearch._client import AsyncElasticsearch, Elasticsearch, error_map
from resilience.clients.elasticsearch._options import ElasticsearchOptions

__all__ = ["IDEMPOTENT", "RETRYABLE_ITEM_STATUS", "AsyncElasticsearch", "BulkError", "BulkItem",
           "Elasticsearch", "ElasticsearchOptions", "error_map"]
