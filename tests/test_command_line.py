"""The `resilience` command dispatches to each subcommand's own module, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from resilience import cli


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`resilience --help` names every subcommand and exits 0."""
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_subcommand_is_an_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown subcommand exits 2 and says which it was and what exists."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'bogus'" in err and "config" in err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_subcommand_module_has_register_and_run(name: str) -> None:
    """Each subcommand's help builds (its module exposes register() and run())."""
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0


def test_help_imports_no_driver() -> None:
    """`python -m resilience --help` loads no datastore driver."""
    code = (
        "import sys; from resilience.cli import main; main(['--help']);"
        "bad = [m for m in ('pymemcache', 'kazoo', 'cassandra', 'nsq', 'tornado',"
        " 'elasticsearch', 'opensearchpy') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
