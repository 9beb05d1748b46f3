"""The client contract: what every datastore client shares, sync and asyncio alike.

A client author writes only what is specific to the driver (see docs/clients.md):

- ``service``, ``options_class``, ``idempotent`` (class attributes): the client's name
  (also its ``RESILIENCE_<SERVICE>_`` prefix), its options class and its idempotency
  table; ``driver_modules`` and ``extra``: what must be importable and the extra that
  installs it; ``ambient_deadline`` (default True): False when every attempt is only a
  driver call given its deadline explicitly, so the pipeline need not set the ambient
  one (user code run inside an attempt then sets it itself, as memcached's ``run()``);
- ``_error_map()``: the driver exception -> resilience error table (built at
  construction, after the driver is imported);
- ``_build_driver()`` / ``_close_driver(driver)``: the lazy driver factory (no I/O) and
  its release (wakes every call still waiting on it);
- ``_attempt(driver, index, fn, remaining, op)`` (sync) or ``_aattempt(...)`` (async):
  one attempt of operation ``op`` on endpoint ``index`` within ``remaining`` seconds,
  e.g. a pool checkout, ``fn(connection)`` and the checkin (``op`` tells whether the
  attempt may repeat ``fn`` itself, e.g. on a fresh connection after a stale pooled one:
  ``self.idempotent.get(op, False)``). It raises the driver's exception; the base maps it.
- the public methods, each one line into :meth:`_call` / :meth:`_acall`;
- optionally ``_health_probe(index, timeout)`` (sync) or ``_ahealth_probe(...)``
  (async): a cheap check of endpoint ``index`` using no user traffic, bounded by
  ``timeout``, raising on failure. A client that has one gets background health
  probing while a breaker is open (:mod:`resilience.core.prober`, option
  ``breaker_health_probe``); one that has none keeps user-traffic probing only.

Everything else is here: options from arguments and the environment, the lazy driver
(built inside the first call's deadline, rebuilt after fork), one breaker per endpoint
from a shared registry (state changes become events), one bulkhead per endpoint, one
retry policy and budget for the whole dependency, the precomputed pipeline
:class:`~resilience.core.operation.Operation` of every operation on every endpoint, the
closed-client behaviour, caller errors that pass through without counting against a
breaker, and the one place where an attempt's driver error is mapped (:meth:`_failure`).

Endpoints are fixed at construction (memcached nodes) or added as they are discovered
(:meth:`_add_endpoint`, e.g. Cassandra hosts); an endpoint keeps its index for good.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar

from resilience.clients._errormap import ErrorMap, IdempotencyTable
from resilience.clients._lazy import LazyDriver
from resilience.config import ClientOptions
from resilience.core.breaker import BreakerRegistry, CircuitBreaker
from resilience.core.bulkhead import Bulkhead, make_bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.fallback import Fallback
from resilience.core.operation import Operation
from resilience.core.pipeline import acall, call
from resilience.core.prober import ClientProbing
from resilience.core.retry import RetryBudget, RetryPolicy, default_is_transient
from resilience.errors import BackendUnavailableError, MissingDriverError, ResilienceError

__all__ = ["ClientBase", "live_clients"]

# Every open client of the process, for process-wide views (a status page, fleet
# control). Weak: holding a client here never keeps it alive; touched only at
# construction and close, never on a call.
_LIVE: weakref.WeakSet[ClientBase[Any]] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def live_clients() -> list[ClientBase[Any]]:
    """The clients of this process that are constructed and not closed, in no set
    order: a snapshot (it does not change as clients come and go)."""
    with _LIVE_LOCK:
        return list(_LIVE)


_monotonic = time.monotonic
D = TypeVar("D")  # the driver: whatever _build_driver returns
T = TypeVar("T")


class _CallerError(Exception):
    """Carries a caller's mistake out of the pipeline, which then counts no failure."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _is_failure(exc: Exception) -> bool:
    # A caller's mistake says nothing about the endpoint: the pipeline records a success.
    return not isinstance(exc, _CallerError)


def _attempt(client: ClientBase[Any], index: int, fn: Callable[[Any], T], op: str,
             remaining: float) -> T:
    """The one sync attempt: the driver (built here, inside the call's deadline on the
    first call, the time it took out of ``remaining``), the client's attempt hook, and
    the driver's error mapped."""
    try:
        # LazyDriver.get() without its frame when built (the driver is its _value).
        driver = client._driver._value
        if driver is None:
            began = _monotonic()
            driver = client._driver.get()
            remaining -= _monotonic() - began
        return client._attempt(driver, index, fn, remaining, op)
    except Exception as exc:
        raise client._failure(exc, op, index)  # noqa: B904 (cause set there)


async def _aattempt(client: ClientBase[Any], index: int, fn: Callable[[Any], Awaitable[T]],
                    op: str, remaining: float) -> T:
    """The one async attempt (twin of :func:`_attempt`)."""
    try:
        driver = client._driver._value
        if driver is None:
            began = _monotonic()
            driver = client._driver.get()
            remaining -= _monotonic() - began
        return await client._aattempt(driver, index, fn, remaining, op)
    except Exception as exc:
        raise client._failure(exc, op, index)  # noqa: B904 (cause set there)


class ClientBase(Generic[D]):
    """Options, endpoints, breakers, operations and the attempt runner of a client.

    Args:
        endpoints: the endpoints known at construction, as named in errors and as keys
            of the breaker registry (``host:port``).
        name: a named instance: RESILIENCE_<SERVICE>_<NAME>_* variables apply.
        environ: the environment to read (``os.environ`` when None).
        events: the event bus to emit on; a private silent one by default.
        breakers: a breaker registry to share (keyed by endpoint); a new one with this
            client's breaker options by default.
        clock: time source of the pipeline and the breakers (a fake clock in tests).
        options: the resolved options (see :meth:`_resolve`).

    Raises:
        MissingDriverError: a module of ``driver_modules`` is not installed.
    """

    service: ClassVar[str]
    options_class: ClassVar[type[ClientOptions]]
    idempotent: ClassVar[IdempotencyTable]
    driver_modules: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    ambient_deadline: ClassVar[bool] = True  # Operation.ambient of every operation

    def __init__(
        self,
        endpoints: Sequence[str],
        options: ClientOptions,
        *,
        events: EventBus | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._require_driver()
        self.options = options
        self._clock = clock
        self.events = events if events is not None else EventBus()
        self._registry = breakers if breakers is not None else BreakerRegistry(options.breaker)
        # One retry policy (and so one retry budget) for the whole dependency.
        self._retry = RetryPolicy(options.retry, is_transient=self._is_transient)
        if options.retry.attempts > 1:
            # The core imports tenacity on the first retry; that import (40-100 ms here)
            # would land inside the first failing call's deadline. Pay it now instead.
            import tenacity  # noqa: F401
        self._errors = self._error_map()  # now, not inside the first failing call
        self._endpoints: list[str] = []
        self._breakers: list[CircuitBreaker] = []
        self._ops: list[dict[str, Operation]] = []
        self._endpoints_lock = threading.Lock()
        self._probing = self._make_probing()
        for endpoint in endpoints:
            self._add_endpoint(endpoint)
        self._driver: LazyDriver[D] = LazyDriver(
            self._build_driver, self._close_driver, service=self.service
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    @classmethod
    def _resolve(
        cls, name: str | None, environ: Mapping[str, str] | None, overrides: Mapping[str, Any]
    ) -> Any:
        """This client's options from arguments and the environment (ConfigError if bad)."""
        return cls.options_class.from_env(name=name, environ=environ, **overrides)

    @classmethod
    def _require_driver(cls) -> None:
        # Imported now, at construction, as tenacity is: a missing extra is a clear error
        # here rather than a ModuleNotFoundError inside the first call, and the import
        # (~40 ms for pymemcache on this machine) is not paid inside the first call's
        # deadline, where it would eat a 50 ms budget. Still no socket and no thread.
        for module in cls.driver_modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is None or exc.name.partition(".")[0] != module.partition(".")[0]:
                    raise  # the driver is there, but something it needs is missing
                raise MissingDriverError(
                    f"{cls.service}: the driver {module} is not installed: "
                    f"pip install 'resilience[{cls.extra or cls.service}]'",
                    service=cls.service,
                ) from exc

    # ---- what a client provides ---------------------------------------------------

    def _error_map(self) -> ErrorMap:
        """Driver exception -> resilience error, most specific first."""
        raise NotImplementedError

    def _build_driver(self) -> D:
        """Build the driver (connection pools, sessions); must do no I/O."""
        raise NotImplementedError

    def _close_driver(self, driver: D) -> None:
        """Release a driver this process built; wake every call waiting on it."""
        raise NotImplementedError

    def _attempt(self, driver: D, index: int, fn: Callable[[Any], T], remaining: float,
                 op: str) -> T:
        """One sync attempt of ``fn`` (operation ``op``) on endpoint ``index``; raises
        the driver's errors."""
        raise NotImplementedError

    async def _aattempt(self, driver: D, index: int, fn: Callable[[Any], Awaitable[T]],
                        remaining: float, op: str) -> T:
        """One async attempt of ``fn`` (operation ``op``) on endpoint ``index``; raises
        the driver's errors."""
        raise NotImplementedError

    def _health_probe(self, index: int, timeout: float) -> None:
        """Optional (sync clients): check endpoint ``index`` without user traffic, within
        ``timeout`` seconds (e.g. memcached ``version`` on a fresh connection); return
        if it answered, raise anything if not. Runs on the shared prober thread while
        the endpoint's breaker is OPEN; a success turns it HALF_OPEN at once. Not
        overridden: no background probing (user-traffic probing only)."""
        raise NotImplementedError

    async def _ahealth_probe(self, index: int, timeout: float) -> None:
        """Optional (async clients): the twin of :meth:`_health_probe`, run as a task on
        the client's event loop (and also cancelled at ``timeout``)."""
        raise NotImplementedError

    def _make_probing(self) -> ClientProbing | None:
        # Background probing if enabled and the client overrides one of the hooks.
        o = self.options.breaker
        if not (o.enabled and o.health_probe):
            return None
        cls = type(self)
        sync = cls._health_probe is not ClientBase._health_probe
        asyn = cls._ahealth_probe is not ClientBase._ahealth_probe
        if not (sync or asyn):
            return None
        return ClientProbing(
            interval=o.health_probe_interval, timeout=o.health_probe_timeout,
            now=self._clock.monotonic,
            probe=self._health_probe if sync else None,
            aprobe=self._ahealth_probe if asyn and not sync else None,
            events=self.events, service=self.service)
    def _is_transient(self, exc: BaseException) -> bool:
        """Whether a failed attempt of an idempotent operation is worth another one: a
        BackendTimeoutError or BackendUnavailableError by default. A client whose driver
        says more about the outcome (Cassandra's write types) decides per error."""
        return default_is_transient(exc)

    def _fallback(self, op: str) -> Fallback[Any] | None:
        """The fallback of operation ``op`` (none by default)."""
        return None

    def _caller_error(self, exc: BaseException, op: str) -> BaseException:
        """What a caller's mistake (an error-map rule to None) raises: ``exc`` itself."""
        return exc

    # ---- endpoints -----------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints known so far, in the order they were added."""
        return tuple(self._endpoints)

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The circuit breaker of one endpoint.

        Raises:
            KeyError: ``endpoint`` is not one of this client's endpoints.
        """
        return self._breakers[self._endpoint_index(endpoint)]

    def bulkhead(self, endpoint: str) -> Bulkhead | None:
        """The bulkhead of one endpoint (every operation on it shares it); None when
        bulkheads are off.

        Raises:
            KeyError: ``endpoint`` is not one of this client's endpoints.
        """
        ops = self._ops[self._endpoint_index(endpoint)]
        return next(iter(ops.values())).bulkhead if ops else None

    @property
    def breaker_registry(self) -> BreakerRegistry:
        """The registry this client's breakers come from (may be shared with others)."""
        return self._registry

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The retry budget every call of this client draws on; None when it is off."""
        return self._retry.budget

    @property
    def clock(self) -> Clock:
        """The clock the client's breakers, budget and deadlines read."""
        return self._clock

    def _endpoint_index(self, endpoint: str) -> int:
        try:
            return self._endpoints.index(endpoint)
        except ValueError:
            raise KeyError(f"{endpoint!r} is not an endpoint of {self!r}") from None

    def set_timeout(self, seconds: float) -> None:
        """Make ``seconds`` the default budget of every later call (a call given
        ``timeout=`` keeps its own), e.g. from fleet control (docs/control.md).

        Plain attribute writes (the options, each operation's timeout): the call path
        takes no lock and the next call reads the new value.

        Raises:
            ConfigError: ``seconds`` is not a valid timeout (named in the message).
        """
        options = dataclasses.replace(self.options, timeout=seconds)  # validates it
        with self._endpoints_lock:
            self.options = options
            for ops in self._ops:
                for operation in list(ops.values()):
                    operation.timeout = options.timeout

    def _add_endpoint(self, endpoint: str) -> int:
        """The index of ``endpoint``, adding its breaker, bulkhead and operations first."""
        with self._endpoints_lock:
            if endpoint in self._endpoints:
                return self._endpoints.index(endpoint)
            breaker = self._registry.get(endpoint)
            self.events.watch_breaker(breaker, self.service)
            if self._probing is not None:
                self._probing.add(len(self._endpoints), breaker)
            bulkhead = make_bulkhead(self.options.bulkhead)
            ops = {op: self._operation(op, flag, bulkhead) for op, flag in self.idempotent.items()}
            # Appended last: a reader that sees the endpoint sees its breaker and ops.
            self._breakers.append(breaker)
            self._ops.append(ops)
            self._endpoints.append(endpoint)
            return len(self._endpoints) - 1

    def _operation(self, name: str, idempotent: bool, bulkhead: Bulkhead | None,
                   kind: str = "first") -> Operation:
        return Operation(
            name, service=self.service, timeout=self.options.timeout, idempotent=idempotent,
            retry=self._retry, bulkhead=bulkhead, events=self.events,
            fallback=None if kind == "hedge" else self._fallback(name), clock=self._clock,
            is_failure=_is_failure, kind=kind, ambient=self.ambient_deadline,
        )

    def _op(self, op: str, index: int) -> Operation:
        """The operation ``op`` on endpoint ``index``; a name outside the idempotency
        table (a ``run()`` of any driver method) is never retried. ``<op>/hedge`` is the
        hedge of ``op`` (clients/_hedge.py): named ``op``, attempts of kind ``hedge``,
        never retried, no fallback."""
        ops = self._ops[index]
        operation = ops.get(op)
        if operation is None:
            bulkhead = next(iter(ops.values())).bulkhead if ops else None
            if op.endswith("/hedge"):
                operation = self._operation(op[:-6], False, bulkhead, "hedge")
            else:
                operation = self._operation(op, False, bulkhead)
            ops[op] = operation
        return operation

    # ---- the one path every call takes ------------------------------------------------

    def _call(self, op: str, index: int, fn: Callable[[Any], T],
              timeout: float | None = None) -> T:
        """Run ``fn`` on endpoint ``index`` through the pipeline (sync).

        The driver is built inside the attempt, so a first call pays the lazy set-up
        inside its own deadline.
        """
        if self._driver._closed:
            raise self._closed_error(op, index)
        # The attempt is a partial of a module function, not a closure over six
        # variables: no cells to build per call (measured: ~1.7k fewer instructions
        # per call, ~8% of what the wrapper adds to a pymemcache get).
        try:
            operation = self._ops[index][op]
        except KeyError:
            operation = self._op(op, index)
        try:
            return call(operation, self._breakers[index], partial(_attempt, self, index, fn, op),
                        timeout)
        except _CallerError as err:
            raise self._caller_error(err.exc, op) from err.exc

    async def _acall(self, op: str, index: int, fn: Callable[[Any], Awaitable[T]],
                     timeout: float | None = None) -> T:
        """Run ``await fn(...)`` on endpoint ``index`` through the pipeline (async twin)."""
        if self._driver._closed:
            raise self._closed_error(op, index)
        try:
            return await acall(self._ops[index].get(op) or self._op(op, index),
                               self._breakers[index], partial(_aattempt, self, index, fn, op),
                               timeout)
        except _CallerError as err:
            raise self._caller_error(err.exc, op) from err.exc

    def _failure(self, exc: Exception, op: str, index: int) -> BaseException:
        """The error an attempt raises for the driver's ``exc`` (kept as ``__cause__``).

        A ResilienceError (a nested call's) passes unchanged; on a closed client every
        failure reads "client is closed"; a rule to None marks the caller's mistake.
        """
        if isinstance(exc, ResilienceError):
            return exc
        endpoint = self._endpoints[index]
        if self._driver._closed:
            err: BaseException = self._closed_error(op, index)
        else:
            errors = self._errors
            rule = errors.rule(exc)
            if rule is not None and rule[1] is None:
                return _CallerError(exc)
            err = errors.translate(exc, service=self.service, endpoint=endpoint,
                                         operation=op)
            if err is exc:
                return exc
        err.__cause__ = exc
        return err

    def _closed_error(self, op: str, index: int) -> BackendUnavailableError:
        return BackendUnavailableError("client is closed", service=self.service,
                                       endpoint=self._endpoints[index], operation=op)

    # ---- release -------------------------------------------------------------------

    def close(self) -> None:
        """Release every connection; calls in flight end at once with an error, and
        later calls raise BackendUnavailableError ("client is closed"). Health probing
        of this client stops."""
        if self._probing is not None:
            self._probing.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._driver.close()

    async def aclose(self) -> None:
        """``close()`` for async code (it never blocks)."""
        if self._probing is not None:
            self._probing.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._driver.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self: Any) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {','.join(self._endpoints)} "
                f"timeout={self.options.timeout}>")
