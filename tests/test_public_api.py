"""The public API: the __all__ snapshot, no driver imported, cold import time reported."""

from __future__ import annotations

import subprocess
import sys

import resilience

PUBLIC = [
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

DRIVERS = [
    "pymemcache",
    "kazoo",
    "cassandra",
    "nsq",
    "tornado",
    "elasticsearch",
    "opensearchpy",
    "elastic_transport",
    "httpx",
    "requests",
    "grpc",
]


def test_all_is_the_reviewed_public_api() -> None:
    assert sorted(resilience.__all__) == sorted(PUBLIC)
    for name in resilience.__all__:
        assert hasattr(resilience, name), name


def test_importing_resilience_imports_no_driver() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import resilience, resilience.core.pipeline, resilience.core.policy\n"
        "print(round((time.perf_counter() - t) * 1000, 1))\n"
        f"print(','.join(m for m in {DRIVERS!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    print(f"cold import resilience: {out[0]} ms")
    assert out[1] == "", f"drivers imported by 'import resilience': {out[1]}"


def test_importing_a_client_package_imports_no_driver() -> None:
    """The driver is imported when a client is built, not when its package is: a service
    can import every wrapper and use one."""
    packages = ("memcache", "cassandra", "zookeeper", "nsq", "elasticsearch", "opensearch")
    code = (
        "import sys\n"
        + "".join(f"import resilience.clients.{p}\n" for p in packages)
        + f"print(','.join(m for m in {DRIVERS!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert out == "", f"drivers imported by the client packages: {out}"
