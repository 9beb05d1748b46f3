"""Apply validated control settings to the live clients of this process.

What control changed is remembered per client (weakly), so it can be undone: a key
removed (or set to ``normal``) puts a breaker control forced back to CLOSED and a
timeout back to the client's own, and a breaker control never touched is left alone
(an OPEN breaker stays OPEN). Applying the same settings again changes nothing, so the
agent re-applies on every poll to reach clients constructed since.

Nothing here is on the call path: breakers switch with their own manual actions and
timeouts with :meth:`ClientBase.set_timeout` (attribute writes), and calls read them as
they always do.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from resilience.control._schema import Settings

__all__ = ["Applier"]

_log = logging.getLogger("resilience.control")


class _Applied:
    __slots__ = ("breakers", "timeout")

    def __init__(self) -> None:
        self.breakers: dict[str, str] = {}  # endpoint -> mode control set
        self.timeout: float | None = None  # the client's own timeout, while overridden


def breaker_mode(settings: Settings, service: str, endpoint: str) -> str:
    """The mode control wants for ``endpoint`` of ``service``: the endpoint's key, else
    the client's key, else ``normal``."""
    mode = settings.get(f"{service}@{endpoint}.breaker")
    if mode is None:
        mode = settings.get(f"{service}.breaker", "normal")
    return str(mode)


class Applier:
    """Brings clients in line with settings, and undoes what it did.

    Args:
        clients: returns the clients to control now (``live_clients`` by default).
        skip: a client never to touch (the agent's own ZooKeeper client).
    """

    def __init__(self, clients: Callable[[], Iterable[Any]], skip: Any = None) -> None:
        self._clients = clients
        self._skip = skip
        self._applied: weakref.WeakKeyDictionary[Any, _Applied] = weakref.WeakKeyDictionary()

    def apply(self, settings: Settings) -> int:
        """Apply ``settings`` to every client; returns how many things changed."""
        changed = 0
        for client in self._clients():
            if client is self._skip:
                continue
            try:
                changed += self._apply_one(client, settings)
            except Exception:  # one odd client must not stop the others
                _log.exception("control: applying to %r failed", client)
        return changed

    def _apply_one(self, client: Any, settings: Settings) -> int:
        service = client.service
        done = self._applied.get(client)
        if done is None:
            done = self._applied[client] = _Applied()
        changed = 0
        if service != "zookeeper":  # its breaker follows its session
            for endpoint in client.endpoints:
                want = breaker_mode(settings, service, endpoint)
                have = done.breakers.get(endpoint, "normal")
                if want == have:
                    continue
                breaker = client.breaker(endpoint)
                if want == "forced_open":
                    breaker.force_open()
                elif want == "forced_closed":
                    breaker.force_closed()
                elif want == "disabled":
                    breaker.disable()
                else:
                    breaker.reset()
                if want == "normal":
                    del done.breakers[endpoint]
                else:
                    done.breakers[endpoint] = want
                _log.info("control: %s %s breaker %s -> %s", service, endpoint, have, want)
                changed += 1
        ms = settings.get(f"{service}.timeout_ms")
        if ms is not None:
            if done.timeout is None:
                done.timeout = client.options.timeout
            if client.options.timeout != ms / 1000:
                client.set_timeout(ms / 1000)
                _log.info("control: %s timeout -> %s ms", service, ms)
                changed += 1
        elif done.timeout is not None:
            client.set_timeout(done.timeout)
            _log.info("control: %s timeout back to %s s", service, done.timeout)
            done.timeout = None
            changed += 1
        return changed
