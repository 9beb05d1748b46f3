"""The healthy path of both wrappers against a real ZooKeeper, and what construction,
configuration, outcomes and protected creates promise."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kazoo.exceptions import BadVersionError, NodeExistsError, NotEmptyError

from resilience.clients.zookeeper import ZooKeeper
from resilience.clients.zookeeper._sync import Call
from resilience.errors import ConfigError

from .conftest import FAST, MakeClient


def test_operations_and_outcomes(zookeeper: Any, make_client: MakeClient, path: str) -> None:
    """CRUD, sequential and ephemeral creates, transactions; a missing node is a result."""
    zk = make_client(zookeeper.address, timeout=2.0)
    assert zk.get(f"{path}/none") is None
    assert zk.exists(f"{path}/none") is None
    assert zk.get_children(f"{path}/none") is None
    assert zk.delete(f"{path}/none") is False
    assert zk.create(f"{path}/a", b"1", makepath=True) == f"{path}/a"
    data, stat = zk.get(f"{path}/a")
    assert data == b"1" and stat.version == 0
    assert zk.set(f"{path}/a", b"2").version == 1
    with pytest.raises(BadVersionError):
        zk.set(f"{path}/a", b"3", 0)
    with pytest.raises(NodeExistsError):
        zk.create(f"{path}/a")
    seq = zk.create(f"{path}/s-", ephemeral=True, sequence=True)
    assert seq.startswith(f"{path}/_c_{zk.zk.client_prefix}") and seq[-10:].isdigit()
    assert zk.exists(seq).ephemeralOwner != 0
    assert zk.ensure_path(f"{path}/x/y") is True
    with pytest.raises(NotEmptyError):
        zk.delete(f"{path}/x")
    results = zk.transaction().create(f"{path}/t", b"t").set_data(f"{path}/a", b"4") \
        .commit(timeout=2.0)
    if zk.loop is not None:
        results = zk.loop.run_until_complete(results)
    assert results[0] == f"{path}/t"
    assert sorted(zk.get_children(path)) == sorted(["a", "t", "x", seq.rsplit("/", 1)[1]])
    assert zk.breaker(zk.endpoints[0]).snapshot(0)["state"] in ("closed", "CLOSED")


def test_protected_create_retry_finds_its_own_node(zookeeper: Any, make_zk: Any,
                                                    path: str) -> None:
    """A second attempt of a protected sequential create returns the node the first made."""
    zk = make_zk(zookeeper.address, timeout=2.0)
    zk.ensure_path(path)
    fn = zk._protected_create(f"{path}/job-", b"", False, True, False)
    first = zk._call("create_protected", 0, fn)
    second = zk._call("create_protected", 0, fn)  # as the core's retry would run it
    assert first == second
    assert zk.get_children(path) == [first.rsplit("/", 1)[1]]


def test_construction_opens_nothing(zookeeper: Any) -> None:
    """No socket and no thread until the first call, which then connects."""
    before = set(threading.enumerate())  # other tests' threads may end meanwhile
    zk = ZooKeeper(zookeeper.address, **FAST)
    assert not set(threading.enumerate()) - before and zk.state == "NEW"
    assert zk.exists("/", timeout=2.0) is not None
    assert zk.state == "CONNECTED"
    zk.close()


def test_configuration_from_environment_and_secret() -> None:
    """Hosts, chroot and auth come from RESILIENCE_ZOOKEEPER_*; the secret never shows."""
    env = {"RESILIENCE_ZOOKEEPER_HOSTS": "10.0.0.1:2181,10.0.0.2:2181",
           "RESILIENCE_ZOOKEEPER_CHROOT": "/app",
           "RESILIENCE_ZOOKEEPER_AUTH": "digest:user:s3cret",
           "RESILIENCE_ZOOKEEPER_SESSION_TIMEOUT_MS": "4000"}
    zk = ZooKeeper(environ=env)
    assert zk.endpoints == ("10.0.0.1:2181,10.0.0.2:2181",)
    assert zk.options.chroot == "/app" and zk.options.session_timeout == 4.0
    assert "s3cret" not in repr(zk) and "s3cret" not in repr(zk.options)
    with pytest.raises(ConfigError, match="RESILIENCE_ZOOKEEPER_SESSION_TIMEOUT_MS"):
        ZooKeeper(environ={"RESILIENCE_ZOOKEEPER_SESSION_TIMEOUT_MS": "soon"})
    with pytest.raises(ConfigError):
        ZooKeeper("10.0.0.1:2181", chroot="app", environ={})


def test_chroot(zookeeper: Any, make_zk: Any, path: str) -> None:
    """Paths are relative to the chroot."""
    root = make_zk(zookeeper.address, timeout=2.0)
    root.ensure_path(path)
    zk = make_zk(zookeeper.address, timeout=2.0, chroot=path)
    zk.create("/inside", b"c")
    assert root.get(f"{path}/inside")[0] == b"c"


def test_call_object_is_small() -> None:
    """An attempt allocates one slotted object."""
    assert Call.__slots__ == ("deadline", "kz", "session")
