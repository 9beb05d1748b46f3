"""The Cassandra bench plugin: registered, its subjects against the session's node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from resilience.bench import plugin
from resilience.errors import CircuitOpenError
from resilience.testing._server_fixtures import require_driver


def test_plugin_is_registered_and_offers_a_ring() -> None:
    """``--datastores cassandra`` loads a Datastore whose node-loss rows use one ring."""
    require_driver("cassandra", "cassandra.cluster")
    ds = plugin.load("cassandra")
    assert isinstance(ds, plugin.Datastore) and ds.name == "cassandra"
    assert callable(getattr(ds, "start_cluster", None))
    with pytest.raises(ValueError, match="unknown subject"):
        ds.subject("nope", [("127.0.0.1", 9042)], 0.1)


@pytest.mark.servers("cassandra")
@pytest.mark.slow
def test_every_subject_reads_the_row_and_the_wrapper_reports_its_breaker(
        real_server: Callable[[str], Any]) -> None:
    """Each subject reads the benchmark row from a node set up by the plugin; the
    wrapper's breaker_open() follows the cluster breaker."""
    require_driver("cassandra", "cassandra.cluster")
    from resilience.bench.cassandra import PLUGIN, _setup

    node = real_server("cassandra")
    _setup([(node.host, node.port)], 1)
    for kind in plugin.SUBJECTS:
        subject = PLUGIN.subject(kind, [(node.host, node.port)], 1.0)
        try:
            assert subject.call().v == 1  # type: ignore[attr-defined]
            assert not subject.breaker_open()
            if kind == "wrapper":
                subject._db.breaker("cluster").force_open()  # type: ignore[attr-defined]
                assert subject.breaker_open()
                with pytest.raises(CircuitOpenError):
                    subject.call()
        finally:
            subject.close()
