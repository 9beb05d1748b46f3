"""The Elasticsearch client's options (``RESILIENCE_ELASTICSEARCH_*``): the shared search set."""

from __future__ import annotations

from dataclasses import dataclass

from resilience.clients._search import SearchOptions
from resilience.config import register_client

__all__ = ["ElasticsearchOptions"]


@register_client("elasticsearch")
@dataclass(frozen=True, slots=True)
class ElasticsearchOptions(SearchOptions):
    """The Elasticsearch wrapper (elasticsearch-py 8)."""
