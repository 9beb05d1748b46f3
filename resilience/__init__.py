"""resilience: make every call a service makes to its datastores fail fast instead of hanging.

The public API is what ``__all__`` lists. Importing this package imports no driver (and
not tenacity either: it is imported on the first retry).
"""

from __future__ import annotations

from resilience.config import BreakerOptions, BulkheadOptions, RetryOptions
from resilience.core.breaker import BreakerRegistry, BreakerState, CircuitBreaker
from resilience.core.bulkhead import Bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.deadline import current_deadline, deadline, propagate, remaining, submit
from resilience.core.events import Event, EventBus, LoggingListener
from resilience.core.fallback import Fallback
from resilience.core.policy import Policy, guard
from resilience.core.retry import RetryBudget, RetryPolicy
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    MissingDriverError,
    RejectedError,
    ResilienceError,
)

__version__ = "0.1.0"

__all__ = [
    "SYSTEM_CLOCK",
    "BackendError",
    "BackendProtocolError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BreakerOptions",
    "BreakerRegistry",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadOptions",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "DeadlineExceededError",
    "Event",
    "EventBus",
    "Fallback",
    "LoggingListener",
    "MissingDriverError",
    "Policy",
    "RejectedError",
    "ResilienceError",
    "RetryBudget",
    "RetryOptions",
    "RetryPolicy",
    "__version__",
    "current_deadline",
    "deadline",
    "guard",
    "propagate",
    "remaining",
    "submit",
]
