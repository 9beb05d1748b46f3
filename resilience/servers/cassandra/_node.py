"""One Cassandra 5.0 node: config, JVM command line, readiness probe.

The JVM is started directly with main class ``org.apache.cassandra.service.
CassandraDaemon``; no bin/cassandra script, no cassandra-env.sh. The config, the data,
the commit log and the log file all live in the node's ``data_dir``; ``listen_address``
and ``rpc_address`` are 127.0.0.1 with the node's own storage and native (CQL) ports, so
several nodes run side by side on one address. Ready when the native port accepts and
``SELECT release_version FROM system.local`` answers through cassandra-driver, each
probe bounded by its timeout.

What the JVM options buy, measured against Cassandra's own (docs/servers-cassandra.md):

* as root, CAP_IPC_LOCK is dropped (``setpriv``) so Cassandra's unconditional
  ``mlockall`` fails with a warning instead of pinning the whole heap: -350 MB RSS;
* ``cassandra.memtable.row_overhead_size`` is given, which skips a 1-2.5 s measuring
  loop at start;
* the serial collector and C1 only (``-XX:TieredStopAtLevel=1``): -50..100 MB RSS and a
  faster start, at the price of peak throughput nobody needs from a test server;
* a 512 MB heap, 64 MB memtables and no key/counter caches.

Acknowledged writes survive :meth:`~resilience.servers._base.Server.kill`: the commit
log syncs in ``batch`` mode (a write is acknowledged after its fsync) and is replayed at
the next start. Cassandra's default, ``periodic``, replays only up to the last sync
marker, so a kill would lose the writes of the last sync period.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from resilience.servers._base import NotInstalledError, Server, install_command
from resilience.servers._ports import free_port
from resilience.servers.cassandra._install import COMPLETE, NAME, java17, lib_dir

__all__ = ["MAIN_CLASS", "PROTOCOL_VERSION", "START_TIMEOUT", "Cassandra", "driver_cluster"]

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
PROTOCOL_VERSION = 5  # the newest native protocol both Cassandra 5.0 and the driver speak
START_TIMEOUT = 120.0  # seconds; 3-5 s quiet, up to ~15 s seen with load average 9

# Without a logback file, logback logs DEBUG to the console: 10x the output.
_LOGBACK = """<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""

# The JPMS lines of Cassandra's conf/jvm17-server.options (the union of the two revisions
# we read; the newer adds java.base/java.nio): without them the daemon fails on
# reflective access to JDK internals.
_JPMS = (
    "-Djdk.attach.allowAttachSelf=true",
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
        "java.rmi/sun.rmi.registry", "java.rmi/sun.rmi.server", "java.sql/java.sql",
        "java.base/java.lang.ref", "jdk.unsupported/sun.misc",
        "jdk.compiler/com.sun.tools.javac.file", "jdk.attach/sun.tools.attach")),
    *(f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/java.lang.module", "java.base/jdk.internal.loader",
        "java.base/jdk.internal.ref", "java.base/jdk.internal.reflect",
        "java.base/jdk.internal.math", "java.base/jdk.internal.module",
        "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal",
        "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.lang.reflect",
        "jdk.compiler/com.sun.tools.javac", "java.base/java.lang", "java.base/java.util",
        "java.base/java.nio")),
    "-Dio.netty.tryReflectionSetAccessible=true",
)  # fmt: skip

_JVM = (
    "-XX:+UseSerialGC",  # smaller RSS than G1 on a small heap; pauses are short at 512 MB
    "-XX:TieredStopAtLevel=1",  # C1 only: faster start, less RSS
    "-Xss256k",  # Cassandra's own default thread stack
    "-XX:+ExitOnOutOfMemoryError",  # die instead of limping on (and silences a warning)
    "-XX:-UsePerfData",  # no hsperfdata file
    "-Djava.net.preferIPv4Stack=true",
    "-Dcassandra-foreground=yes",
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",  # single node: nothing to settle
    "-Dcassandra.memtable.row_overhead_size=180",  # skips a 1-2.5 s measurement at start
)


def _yaml(cfg: Mapping[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in cfg.items())


class Cassandra(Server):
    """One Cassandra 5.0 node on loopback, its data in ``data_dir``.

    Args:
        data_dir: data, commit log, hints, config and the log file.
        native_port: the CQL port (:attr:`port`); free when omitted.
        storage_port: the inter-node port; free when omitted.
        heap_mb: the JVM heap (``-Xms`` = ``-Xmx``); at least 256.
        yaml: cassandra.yaml keys to add or override, values as YAML text
            (``{"read_request_timeout": "500ms"}``).
        jvm_options: JVM options added after ours (a later option wins).
        seeds: ``host:storage_port`` of the seed nodes; the node itself when omitted.
        initial_token: this node's token (its single vnode); random when omitted.
        host: ``listen_address`` and ``rpc_address``; loopback unless you run it in a
            namespace.
        netns: run inside this network namespace (``ip netns exec NAME``), with ``host``
            one of its addresses; see :class:`~resilience.servers._server.Server`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        native_port: int | None = None,
        storage_port: int | None = None,
        name: str = NAME,
        heap_mb: int = 512,
        yaml: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = (),
        seeds: Sequence[str] = (),
        initial_token: int | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        if heap_mb < 256:
            raise ValueError(f"{name}: heap_mb must be >= 256 (Cassandra needs it), got {heap_mb}")
        ports = {"native": native_port or free_port(), "storage": storage_port or free_port()}
        super().__init__(name, kind=NAME, data_dir=data_dir, ports=ports, host=host, netns=netns)
        self.heap_mb = heap_mb
        self.yaml_overrides = dict(yaml or {})
        self.jvm_options = list(jvm_options)
        self.seeds = list(seeds) or [self.storage_address]
        self.initial_token = initial_token

    @property
    def storage_address(self) -> str:
        """``host:storage_port``: how other nodes (and ``seeds``) name this one."""
        return f"{self.host}:{self.ports['storage']}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "cassandra.yaml"

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start and wait until ready; the default allows for a loaded 2-core machine.

        Raises:
            ServerError: it exited or did not answer in time (with the log tail).
        """
        return super().start(timeout)

    def restart(self, timeout: float = START_TIMEOUT) -> Self:
        """Stop (gracefully, ~5 s) and start again on the same ports with the same data."""
        return super().restart(timeout)

    def config(self) -> dict[str, str]:
        """The cassandra.yaml keys this node runs with (values as YAML text)."""
        d = self.data_dir
        cfg = {
            "cluster_name": "resilience",
            "num_tokens": "1",
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "endpoint_snitch": "SimpleSnitch",
            # batch: a write is acknowledged after its commit log fsync, so acknowledged
            # writes survive kill(). The default (periodic, 10 s) replays only up to the
            # last sync marker: a kill loses the last seconds of writes (measured: the
            # insert latency here was the same, ~2 ms median).
            "commitlog_sync": "batch",
            "commitlog_segment_size": "8MiB",  # 32 MiB by default, preallocated
            "seed_provider": "\n  - class_name: org.apache.cassandra.locator.SimpleSeedProvider"
            f'\n    parameters:\n      - seeds: "{",".join(self.seeds)}"',
            "data_file_directories": f"[{d / 'data'}]",
            "commitlog_directory": str(d / "commitlog"),
            "saved_caches_directory": str(d / "saved_caches"),
            "hints_directory": str(d / "hints"),
            "cdc_raw_directory": str(d / "cdc_raw"),
            "listen_address": self.host,
            "rpc_address": self.host,
            "storage_port": str(self.ports["storage"]),
            "native_transport_port": str(self.port),
            "start_native_transport": "true",
            "authenticator": "AllowAllAuthenticator",
            "authorizer": "AllowAllAuthorizer",
            "auto_snapshot": "false",  # makes DROP and TRUNCATE fast
            "hinted_handoff_enabled": "false",
            "storage_compatibility_mode": "NONE",  # a new cluster: 5.0 formats from the start
            "memtable_heap_space": "64MiB",
            "memtable_offheap_space": "64MiB",
            "concurrent_compactors": "1",
            "concurrent_reads": "4",
            "concurrent_writes": "4",
            "concurrent_counter_writes": "4",
            "key_cache_size": "0MiB",
            "counter_cache_size": "0MiB",
            "file_cache_size": "32MiB",
        }
        if self.initial_token is not None:
            cfg["initial_token"] = str(self.initial_token)
        cfg.update(self.yaml_overrides)
        return cfg

    def prepare(self) -> None:
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_yaml(self.config()))
        (self.data_dir / "logback.xml").write_text(_LOGBACK)

    def command(self) -> list[str]:
        libs = lib_dir()
        if not (libs / COMPLETE).is_file():
            raise NotInstalledError(
                NAME, f"not installed (no jars in {libs})", install_hint=install_command(NAME)
            )
        jamm = sorted(libs.glob("jamm-*.jar"))
        cmd = []
        setpriv = shutil.which("setpriv")
        if os.geteuid() == 0 and setpriv:
            # Without CAP_IPC_LOCK, Cassandra's mlockall() fails harmlessly instead of
            # pinning the whole heap in RAM (measured: ~350 MB less RSS).
            cmd += [setpriv, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"]
        cmd += [str(java17()), f"-Xms{self.heap_mb}m", f"-Xmx{self.heap_mb}m", *_JVM, *_JPMS]
        cmd += [f"-javaagent:{jamm[-1]}"] if jamm else []
        cmd += [
            f"-Dcassandra.config={self.config_path.as_uri()}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={self.data_dir}",
            # lz4-java and snappy-java unpack their native libraries into java.io.tmpdir
            # (/tmp whatever TMPDIR says) and a killed JVM never deletes them.
            f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
            f"-Dlogback.configurationFile={self.data_dir / 'logback.xml'}",
            *self.jvm_options,
            "-cp",
            f"{libs}/*",
            MAIN_CLASS,
        ]
        return cmd

    def probe(self, timeout: float) -> bool:
        """The CQL port accepts and ``system.local`` answers, within ``timeout`` seconds."""
        # A plain connect first: building a driver Cluster costs ~0.2 s and a thread pool.
        with socket.create_connection((self.host, self.port), timeout=timeout):
            pass
        return self.release_version(timeout) is not None

    def driver_cluster(self, timeout: float = 5.0, **kwargs: Any) -> Any:
        """This node as a cassandra-driver ``Cluster``, not connected (:func:`driver_cluster`)."""
        return driver_cluster([(self.host, self.port)], timeout, **kwargs)

    def release_version(self, timeout: float = 2.0) -> str | None:
        """``release_version`` from ``system.local`` through cassandra-driver, or None."""
        cluster = self.driver_cluster(timeout)
        try:
            row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        except Exception:  # not serving yet: NoHostAvailable, OperationTimedOut...
            return None
        finally:
            cluster.shutdown()
        return None if row is None else str(row.release_version)


def driver_cluster(
    endpoints: Sequence[tuple[str, int]], timeout: float = 5.0, **kwargs: Any
) -> Any:
    """A cassandra-driver ``Cluster`` with ``endpoints`` (host, native port) as contact points.

    Protocol v5 is fixed (no downgrade dance and its warnings); the default execution
    profile has a round-robin policy and ``request_timeout=timeout``; ``connect_timeout``
    and ``control_connection_timeout`` are ``timeout``. ``kwargs`` go to ``Cluster()``
    and override these. Not connected; the caller calls ``shutdown()``.
    """
    # lazily: importing the driver costs ~0.3 s and `import resilience` imports none
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout)
    options: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "execution_profiles": {EXEC_PROFILE_DEFAULT: profile},
        "connect_timeout": timeout,
        "control_connection_timeout": timeout,
    }
    options.update(kwargs)
    return Cluster(list(endpoints), **options)
