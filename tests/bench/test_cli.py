"""`resilience bench` argument handling (the runs themselves are tested in test_suite.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from resilience.bench import cli


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser)
    return parser.parse_args(list(argv))


def test_quick_run_does_not_overwrite_the_committed_full_result() -> None:
    """Without --out, --quick writes to its own folder and a full run to the committed one."""
    assert cli.output_dir(_parse()) == cli.DEFAULT_OUT
    assert cli.output_dir(_parse("--quick")) == cli.QUICK_OUT != cli.DEFAULT_OUT
    assert cli.output_dir(_parse("--quick", "--out", "/tmp/r")) == Path("/tmp/r")


def test_unknown_fault_is_an_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown fault id exits 2 with a message, before any server starts."""
    args = _parse("--faults", "no-such-fault", "--no-overhead")
    assert cli.run(args) == 2
    assert "no-such-fault" in capsys.readouterr().err
