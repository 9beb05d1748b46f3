"""resilience.core: the decisions (no I/O) and the one pipeline that performs calls.

clock      `Clock` protocol and `SYSTEM_CLOCK` (time.monotonic)
deadline   the ambient deadline (ContextVar): `deadline`, `remaining`, `propagate`
breaker    circuit breaker per endpoint, and a registry of them
retry      `RetryPolicy` (tenacity decides attempts 2..n) and the shared `RetryBudget`
bulkhead   concurrency limit for threads and tasks
fallback   value or function used instead of an error
events     `EventBus`, `Event`, `LoggingListener`; metrics: Prometheus / OpenTelemetry
operation  `Operation` (an operation's settings, resolved once) and outcome handling
pipeline   `call` / `acall`: deadline -> bulkhead -> breaker -> attempt -> record ->
           retry -> fallback
policy     `Policy` / `guard`: the pipeline around any callable, for service code
"""
