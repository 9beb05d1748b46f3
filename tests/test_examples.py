"""Every program in examples/ runs to completion against the real servers it starts."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


# The servers each example starts (a missing one skips it, or fails it when required).
SERVERS = {"search_": ("opensearch",), "zookeeper_": ("zookeeper",),
           "nsq_": ("nsq", "memcached"), "cassandra_": ("cassandra",),
           "propagation_": ()}


def _param(path: pathlib.Path) -> object:
    servers = next((s for prefix, s in SERVERS.items() if path.name.startswith(prefix)),
                   ("memcached",))
    return pytest.param(path, id=path.name, marks=pytest.mark.servers(*servers))


@pytest.mark.parametrize("path", [_param(p) for p in EXAMPLES])
def test_example_runs(path: pathlib.Path) -> None:
    """The example exits 0 within two minutes (each starts and stops its own servers)."""
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's code, not another
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
