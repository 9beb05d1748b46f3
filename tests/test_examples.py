"""Every program in examples/ runs to completion against the real servers it starts."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from resilience.testing._server_fixtures import require_installed

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


# The server each example starts (by its file name's prefix): a missing one skips the
# example, or fails it when RESILIENCE_REQUIRE_SERVERS requires that server.
SERVERS = {"memcache": "memcached", "cassandra": "cassandra"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: pathlib.Path) -> None:
    """The example exits 0 within two minutes (each starts and stops its own servers)."""
    require_installed(SERVERS[path.name.partition("_")[0]])
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
