"""``resilience proxy``: runs a proxy with toxics from options; bad options are named."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from resilience.cli import main

from ._echo import EchoServer


def test_proxy_command_forwards_applies_toxics_and_prints_counters() -> None:
    with EchoServer() as echo:
        proc = subprocess.Popen(
            [sys.executable, "-m", "resilience", "proxy", "--upstream",
             f"{echo.address[0]}:{echo.address[1]}", "--toxic", "latency:latency_ms=100",
             "--seed", "1", "--duration", "20"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("listening on 127.0.0.1:")
            port = int(first.split()[2].rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                t0 = time.monotonic()
                s.sendall(b"hello")
                assert s.recv(5) == b"hello"
                assert time.monotonic() - t0 >= 0.09
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
        finally:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0
    assert "accepted=1" in out and "upstream_bytes=5" in out


def test_duration_ends_the_command_by_itself(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    with EchoServer() as echo:
        assert main(["proxy", "--upstream", f"127.0.0.1:{echo.address[1]}",
                     "--duration", "0.2"]) == 0
    assert time.monotonic() - t0 < 3
    out = capsys.readouterr().out
    assert "listening on" in out and "counters accepted=0" in out


@pytest.mark.parametrize(
    ("spec", "names"),
    [("latency:latency=5", ["--toxic", "latency_ms=<float>", "jitter_ms=<float>"]),
     ("nosuch", ["--toxic", "unknown toxic 'nosuch'", "blackhole"]),
     ("latency:latency_ms=fast", ["--toxic", "latency_ms='fast'", "float"]),
     ("blackhole:direction=sideways", ["--toxic", "upstream, downstream"])],
)
def test_bad_toxic_spec_names_the_option_and_the_accepted_fields(
    spec: str, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["proxy", "--upstream", "127.0.0.1:1", "--toxic", spec])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err


def test_non_loopback_upstream_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", "--upstream", "192.0.2.1:80", "--duration", "1"]) == 2
    assert "loopback" in capsys.readouterr().err
