"""The `resilience config` command: effective settings, sources, exit codes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import pytest

from resilience import cli, config

M = "RESILIENCE_MEMCACHE_"


@dataclass(frozen=True, slots=True)
class VaultOptions(config.ClientOptions):
    """A client with a secret, to check the command never prints it."""

    token: str = config.option("none", "TOKEN", "str", "API token", secret=True, client_only=True)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RESILIENCE_ option variable of the outer environment leaks into a test."""
    for var in list(os.environ):
        if var.startswith("RESILIENCE_") and var.split("_")[1].lower() in (
            *config.CLIENTS, "default"
        ):
            monkeypatch.delenv(var)


def rows(out: str) -> dict[str, list[str]]:
    """Table rows of the output, by key."""
    return {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}


def test_prints_each_setting_with_value_variable_and_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Durations show in ms; a set variable is the source, others say default."""
    monkeypatch.setenv(f"{M}TIMEOUT_MS", "42")
    assert cli.main(["config", "memcache"]) == 0
    out = capsys.readouterr().out
    table = rows(out)
    assert out.startswith("memcache\n")
    assert table["TIMEOUT_MS"] == ["TIMEOUT_MS", "42", f"{M}TIMEOUT_MS", f"{M}TIMEOUT_MS"]
    assert table["CONNECT_TIMEOUT_MS"] == ["CONNECT_TIMEOUT_MS", "100", f"{M}CONNECT_TIMEOUT_MS",
                                           "default"]
    assert set(table) == {k.env for k in config.option_keys(config.CLIENTS["memcache"])}


def test_named_instance_shows_its_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--name reads RESILIENCE_<CLIENT>_<NAME>_<KEY> and names those variables."""
    monkeypatch.setenv(f"{M}SESSIONS_POOL_SIZE", "4")
    assert cli.main(["config", "memcache", "--name", "sessions"]) == 0
    row = rows(capsys.readouterr().out)["POOL_SIZE"]
    assert row == ["POOL_SIZE", "4", f"{M}SESSIONS_POOL_SIZE", f"{M}SESSIONS_POOL_SIZE"]


def test_bad_value_exits_2_with_the_message_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ConfigError becomes exit status 2 and its message on stderr."""
    monkeypatch.setenv(f"{M}TIMEOUT_MS", "fast")
    assert cli.main(["config", "memcache"]) == 2
    captured = capsys.readouterr()
    assert f"{M}TIMEOUT_MS='fast': expected a whole number of milliseconds" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_typo_exits_2_with_did_you_mean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt variable is reported with its suggestion."""
    monkeypatch.setenv(f"{M}TIMOUT_MS", "5")
    assert cli.main(["config"]) == 2
    assert f"did you mean {M}TIMEOUT_MS" in capsys.readouterr().err


def test_unknown_client_exits_2_listing_the_clients(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown client name lists the known ones."""
    assert cli.main(["config", "memcached"]) == 2
    assert "unknown client 'memcached'; choose from" in capsys.readouterr().err


def test_no_client_prints_every_registered_client(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a client argument every registered client gets a table."""
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    for client in config.CLIENTS:
        assert f"\n{client}\n" in f"\n{out}"


def test_json_output_has_python_values_and_sources(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json gives seconds, env form, variable and source for each key."""
    monkeypatch.setenv(f"{M}SERVERS", "a:1,b:2")
    assert cli.main(["config", "memcache", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    settings = {s["key"]: s for s in doc["memcache"]["settings"]}
    assert settings["TIMEOUT_MS"]["value"] == 0.1 and settings["TIMEOUT_MS"]["env_value"] == "100"
    assert settings["SERVERS"]["value"] == ["a:1", "b:2"]
    assert settings["SERVERS"]["source"] == f"{M}SERVERS"


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """A secret field prints as *** in the table and in JSON."""
    monkeypatch.setitem(config.CLIENTS, "vault", VaultOptions)
    monkeypatch.setenv("RESILIENCE_VAULT_TOKEN", "hunter2")
    assert cli.main(["config", "vault"]) == 0
    assert cli.main(["config", "vault", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and rows(out.split("\n{")[0])["TOKEN"][1] == "***"


def test_markdown_prints_the_option_table(capsys: pytest.CaptureFixture[str]) -> None:
    """--markdown prints exactly the generated table of docs/configuration.md."""
    assert cli.main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out == config.option_table_markdown()


def test_module_entry_point_runs_in_a_fresh_process() -> None:
    """`python -m resilience config memcache` reads the real environment and exits 0."""
    root = pathlib.Path(__file__).parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_")}
    env[f"{M}TIMEOUT_MS"] = "42"
    done = subprocess.run(
        [sys.executable, "-m", "resilience", "config", "memcache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout)["TIMEOUT_MS"][1:] == ["42", f"{M}TIMEOUT_MS", f"{M}TIMEOUT_MS"]
    env[f"{M}TIMEOUT_MS"] = "-5"
    done = subprocess.run(
        [sys.executable, "-m", "resilience", "config", "memcache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2 and "'-5'" in done.stderr and "Traceback" not in done.stderr
