"""resilience: make every call a service makes to its datastores fail fast instead of hanging.

The public API is what ``__all__`` lists. Importing this package imports no driver.
"""

from __future__ import annotations

from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    RejectedError,
    ResilienceError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendProtocolError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "DeadlineExceededError",
    "RejectedError",
    "ResilienceError",
    "__version__",
]
