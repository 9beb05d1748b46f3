"""`ControlAgent`: one per process and service; keeps the control node's last good data
and applies it to the process's live clients. Contract: docs/control.md.

Two ways in, one handler:

- a lasting data watch (``ZooKeeper.watch_data``): a change arrives as soon as
  ZooKeeper sends it, and the watch re-arms after every reconnect or new session;
- a poll every ``poll_interval`` on the agent's own thread: one bounded ``get`` that
  confirms the data is current (the age), catches anything a watch missed, and
  re-applies the data to clients constructed since.

Fail-static: data is replaced only by newer valid data from ZooKeeper. While ZooKeeper
cannot be reached (SUSPENDED, LOST, frozen) the agent keeps what it has, and its age
(seconds since the agent last read the node) grows. Malformed data is rejected as a
whole, reported (``last_error``, ``rejected``, a WARNING log) and the previous data
kept. With ``cache_file`` the last good data also survives a restart.

Calls never wait for the agent: it changes breakers and timeouts from its own threads
and calls read them as usual.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from resilience.control._apply import Applier
from resilience.control._schema import Settings, parse_node, validate
from resilience.errors import ConfigError

__all__ = ["DEFAULT_ROOT", "ControlAgent", "node_path", "start"]

DEFAULT_ROOT = "/resilience/control"
_log = logging.getLogger("resilience.control")


def node_path(service: str, root: str = DEFAULT_ROOT) -> str:
    """The control node of ``service`` under ``root``.

    Raises:
        ConfigError: ``service`` is empty or holds a ``/``; ``root`` is not absolute.
    """
    if not isinstance(service, str) or not service or "/" in service:
        raise ConfigError(f"service={service!r}: expected a non-empty name without '/'")
    if not root.startswith("/"):
        raise ConfigError(f"root={root!r}: expected an absolute ZooKeeper path")
    return f"{root.rstrip('/')}/{service}"


class ControlAgent:
    """Watches ``<root>/<service>`` and applies it to this process's clients.

    Args:
        zk: a ``resilience.clients.zookeeper.ZooKeeper`` (the agent never closes it), or
            a hosts string (the agent makes one, and closes it).
        service: the name of this service: its node is ``<root>/<service>``.
        root: the parent of the control nodes.
        poll_interval: seconds between the agent's confirming reads (> 0).
        cache_file: where to keep the last good data across restarts (optional).
        clients: returns the clients to control (``resilience.clients.live_clients``).
        on_apply: called as ``fn(agent)`` after new data was applied (agent's thread).

    Raises:
        ConfigError: a bad service, root or poll_interval.
    """

    def __init__(self, zk: Any, service: str, *, root: str = DEFAULT_ROOT,
                 poll_interval: float = 1.0, cache_file: str | os.PathLike[str] | None = None,
                 clients: Callable[[], Iterable[Any]] | None = None,
                 on_apply: Callable[[ControlAgent], object] | None = None) -> None:
        self.path = node_path(service, root)
        self.service = service
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) \
                or not 0 < poll_interval <= 3600:
            raise ConfigError(f"poll_interval={poll_interval!r}: expected seconds > 0, <= 3600")
        self.poll_interval = float(poll_interval)
        if isinstance(zk, str):
            from resilience.clients.zookeeper import ZooKeeper

            zk, self._owns_zk = ZooKeeper(zk), True
        else:
            self._owns_zk = False
        self.zk = zk
        if clients is None:
            from resilience.clients import live_clients

            clients = live_clients
        self._applier = Applier(clients, skip=zk)
        self._cache = Path(cache_file) if cache_file is not None else None
        self._on_apply = on_apply
        self._lock = threading.Lock()  # the agent's own state; never taken by a call
        self.settings: Settings = {}
        self.version: int | None = None  # mzxid of the data applied; 0: no node
        self._synced_at = -math.inf  # monotonic time of the last read of the node
        self.last_error: str | None = None
        self.rejected = 0  # malformed data seen (each version once)
        self._rejected_version: int | None = None
        self._from_cache = False  # the data applied came from cache_file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    # ---- life ----------------------------------------------------------------------

    def start(self) -> ControlAgent:
        """Load the cache file (if any), apply it, then watch and poll ZooKeeper. Returns
        within the ZooKeeper client's connect timeout even when it is unreachable (the
        watch arms on the first CONNECTED)."""
        self._load_cache()
        self._watch = self.zk.watch_data(self.path, self._on_watch)
        self._thread = threading.Thread(target=self._run, name=f"resilience-control-{self.service}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching and polling (what was applied stays); bounded by ``timeout``."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._owns_zk:
            self.zk.close()

    def __enter__(self) -> ControlAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what it reports -------------------------------------------------------------

    def age(self) -> float:
        """Seconds since the agent last read the node from ZooKeeper (a watch delivery
        or a successful poll, valid data or not; ``rejected`` tells the latter), or since
        the cache file was written for data loaded from it; inf: never."""
        return time.monotonic() - self._synced_at

    def status(self) -> dict[str, Any]:
        """The node, the data applied, its version and age, and the last rejection."""
        return {"service": self.service, "path": self.path, "version": self.version,
                "age_seconds": self.age(), "settings": dict(self.settings),
                "rejected": self.rejected, "last_error": self.last_error}

    def collect(self) -> Iterable[Any]:
        """The prometheus_client collector protocol (``registry.register(agent)``):
        ``resilience_control_age_seconds``, ``resilience_control_version`` and
        ``resilience_control_rejected_total``, labelled by service."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        age = GaugeMetricFamily("resilience_control_age_seconds",
                                "Seconds since the control node was last read from ZooKeeper",
                                labels=["service"])
        age.add_metric([self.service], self.age())
        version = GaugeMetricFamily("resilience_control_version",
                                    "zxid of the control data applied (0: no node)",
                                    labels=["service"])
        version.add_metric([self.service], float(self.version or 0))
        rejected = CounterMetricFamily("resilience_control_rejected",
                                       "Malformed control data rejected", labels=["service"])
        rejected.add_metric([self.service], self.rejected)
        return [age, version, rejected]

    # ---- ZooKeeper -> settings ---------------------------------------------------------

    def _on_watch(self, data: bytes | None, stat: Any) -> None:
        self._receive(data, None if stat is None else stat.mzxid)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                got = self.zk.get(self.path, timeout=min(self.poll_interval, 1.0))
            except Exception as exc:  # unreachable: keep the data, the age grows
                _log.debug("control: %s: poll failed: %s", self.path, exc)
            else:
                self._receive(None if got is None else got[0],
                              None if got is None else got[1].mzxid)
            # Under the lock: applied outside it, these settings could land after newer
            # ones the watch applied meanwhile, and undo them until the next poll.
            with self._lock:
                try:
                    self._applier.apply(self.settings)  # clients constructed since
                except Exception:
                    _log.exception("control: %s: applying failed", self.path)

    def _receive(self, data: bytes | None, mzxid: int | None) -> None:
        version = 0 if mzxid is None else int(mzxid)
        with self._lock:
            self._synced_at = time.monotonic()
            if version == self.version:
                return
            if not self._from_cache and self.version is not None and 0 < version < self.version:
                return  # an older read finishing late (a cache file's may be another
                # ensemble's zxid: anything ZooKeeper says replaces it)
            try:
                settings = parse_node(data)
            except ConfigError as exc:
                if self._rejected_version != version:
                    self._rejected_version = version
                    self.rejected += 1
                    self.last_error = f"{self.path} version {version}: {exc}"
                    _log.warning("control: rejected, keeping version %s: %s", self.version,
                                 self.last_error)
                return
            self.settings, self.version, self._from_cache = settings, version, False
            self._save_cache(data or b"", version)  # first: once applied, it is kept
            self._applier.apply(settings)
        _log.info("control: %s version %s applied: %s", self.path, version, settings)
        if self._on_apply is not None:
            try:
                self._on_apply(self)
            except Exception:
                _log.exception("control: on_apply failed")

    # ---- the cache file ----------------------------------------------------------------

    def _save_cache(self, data: bytes, version: int) -> None:
        if self._cache is None:
            return
        try:
            record = {"version": version, "saved_at": time.time(),
                      "settings": json.loads(data) if data.strip() else {}}
            tmp = self._cache.with_name(self._cache.name + ".tmp")
            tmp.write_text(json.dumps(record, sort_keys=True))
            os.replace(tmp, self._cache)  # atomic: a crash leaves the old file or the new
        except (OSError, ValueError) as exc:
            _log.warning("control: cannot write %s: %s", self._cache, exc)

    def _load_cache(self) -> None:
        if self._cache is None or not self._cache.exists():
            return
        try:
            record = json.loads(self._cache.read_text())
            settings = validate(record["settings"])
            version, saved_at = int(record["version"]), float(record["saved_at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("control: ignoring %s: %s", self._cache, exc)
            return
        with self._lock:
            if self.version is not None:
                return
            self.settings, self.version, self._from_cache = settings, version, True
            self._synced_at = time.monotonic() - max(0.0, time.time() - saved_at)
            self._applier.apply(settings)
        _log.info("control: %s version %s from %s applied", self.path, version, self._cache)


def start(zk: Any, service: str, **kwargs: Any) -> ControlAgent:
    """A started :class:`ControlAgent` (same arguments): ``resilience.control.start(
    zk=ZooKeeper(hosts), service="orders")``."""
    return ControlAgent(zk, service, **kwargs).start()
