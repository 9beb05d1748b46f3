"""pytest fixtures (core); re-exported by resilience.testing.plugin."""

from __future__ import annotations

__all__: list[str] = []
