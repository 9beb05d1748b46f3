"""The OpenSearch client's options (``RESILIENCE_OPENSEARCH_*``): the shared search set."""

from __future__ import annotations

from dataclasses import dataclass

from resilience.clients._search import SearchOptions
from resilience.config import register_client

__all__ = ["OpenSearchOptions"]


@register_client("opensearch")
@dataclass(frozen=True, slots=True)
class OpenSearchOptions(SearchOptions):
    """The OpenSearch wrapper (opensearch-py)."""
