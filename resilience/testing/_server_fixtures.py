"""pytest fixtures (server); re-exported by resilience.testing.plugin."""

from __future__ import annotations

__all__: list[str] = []
