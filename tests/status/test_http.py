"""The status app over real HTTP: WSGI in a threaded wsgiref server, ASGI in uvicorn,
and the ``resilience status`` command against them. Forcing needs the token, compares
it in constant time, and every attempt is logged with who and what."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from resilience.cli import main
from resilience.clients.memcache import Memcache
from resilience.errors import ConfigError
from resilience.status import StatusApp, asgi_app, wsgi_app

from ._serve import MOUNT, request, service, serving

DEAD = "127.0.0.1:47"  # nothing listens there (refused at once); used by no other test
TOKEN = "s3cret-token"


@pytest.fixture
def cache() -> Iterator[Memcache]:
    cache = Memcache([DEAD], environ={}, breaker_health_probe=False)
    yield cache
    cache.close()


def _state(base: str, endpoint: str = DEAD) -> str:
    code, _, body = request(base + "/status.json")
    assert code == 200
    for svc in json.loads(body)["services"]:
        for b in svc["breakers"]:
            if svc["service"] == "memcache" and b["endpoint"] == endpoint:
                return str(b["state"])
    raise AssertionError(f"{endpoint} not listed")


def _force(base: str, action: str, token: str | None = TOKEN,
           **extra: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"service": "memcache", "endpoint": DEAD, "action": action, **extra}
    code, _, out = request(base + "/force", method="POST", body=body, headers=headers)
    return code, json.loads(out)


def test_wsgi_mounted_serves_the_page_and_the_json_and_is_read_only_by_default(
        cache: Memcache, caplog: pytest.LogCaptureFixture) -> None:
    with serving(service(wsgi_app(environ={}))) as url:
        base = url + MOUNT
        code, headers, page = request(base + "/")
        assert code == 200 and headers["Content-Type"].startswith("text/html")
        # Self-contained: the JSON URL carries the mount point, nothing is fetched elsewhere.
        assert b'"/resilience/status.json"' in page
        assert b"http" not in page.replace(b"http-equiv", b"")
        assert _state(base) == "closed"
        with caplog.at_level(logging.WARNING, "resilience.status"):
            code, doc = _force(base, "open", operator="ann")
        assert code == 403 and "read-only" in doc["error"]
        assert _state(base) == "closed"
        assert "forcing is disabled" in caplog.text and "'ann'" in caplog.text
        assert request(base + "/status.json", method="POST", body={})[0] == 405
        assert request(base + "/nothing")[0] == 404


def test_forcing_needs_the_right_token_and_every_attempt_is_logged(
        cache: Memcache, caplog: pytest.LogCaptureFixture) -> None:
    with serving(service(wsgi_app(token=TOKEN))) as url, \
            caplog.at_level(logging.WARNING, "resilience.status"):
        base = url + MOUNT
        assert _force(base, "open", token=None)[0] == 401
        assert _force(base, "open", token="s3cret-tokex")[0] == 401
        assert _force(base, "open", token=TOKEN + "x")[0] == 401
        assert _state(base) == "closed"
        assert caplog.text.count("missing or wrong token") == 3
        code, doc = _force(base, "shut")
        assert code == 400 and "'shut'" in doc["error"]
        code, doc = _force(base, "open", operator="bob")
        assert code == 200 and doc["forced"] == 1
        assert _state(base) == "forced_open"
        assert "'bob' from 127.0.0.1" in caplog.text and "forced 'memcache'" in caplog.text
        assert _force(base, "closed")[0] == 200 and _state(base) == "forced_closed"
        assert _force(base, "reset")[0] == 200 and _state(base) == "closed"
        code, _, _ = request(base + "/force", method="POST", body=[1],
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 400


def test_the_token_comes_from_the_environment_and_bad_settings_are_named() -> None:
    assert StatusApp(environ={"RESILIENCE_STATUS_TOKEN": "t"}).forcing
    assert not StatusApp(environ={"RESILIENCE_STATUS_TOKEN": ""}).forcing
    assert not StatusApp(environ={}).forcing
    with pytest.raises(ConfigError, match="token=''"):
        StatusApp(token="")
    with pytest.raises(ConfigError, match="RESILIENCE_STATUS_TOKEN: expected printable ASCII"):
        StatusApp(environ={"RESILIENCE_STATUS_TOKEN": "caf\u00e9"})
    with pytest.raises(ConfigError, match="refresh=0"):
        StatusApp(refresh=0)


def test_the_command_prints_every_breaker_and_forces_with_the_token(
        cache: Memcache, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESILIENCE_STATUS_TOKEN", raising=False)
    with serving(service(wsgi_app(token=TOKEN))) as url:
        base = url + MOUNT
        assert main(["status", "--url", base + "/"]) == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if DEAD in x)
        assert line.split()[:3] == ["memcache", DEAD, "CLOSED"]
        assert main(["status", "--url", base, "--force", "open", "--service", "memcache",
                     "--endpoint", DEAD, "--token", "wrong"]) == 1
        assert "refused (401)" in capsys.readouterr().err
        assert main(["status", "--url", base, "--force", "open", "--service", "memcache",
                     "--endpoint", DEAD, "--token", TOKEN]) == 0
        assert main(["status", "--url", base, "--force", "open", "--service", "memcache",
                     "--endpoint", DEAD]) == 1  # no token anywhere (environ has none here)
        assert "needs --service, --endpoint and a token" in capsys.readouterr().err
        assert main(["status", "--url", base, "--watch", "0.05", "--count", "2"]) == 0
        watched = capsys.readouterr().out.splitlines()
        # Two refreshes, each with DEAD forced open. Other tests of a full run may leave
        # clients of their own alive (live_clients() lists them): count only DEAD's rows.
        assert sum(x.startswith("SERVICE") for x in watched) == 2
        rows = [x.split() for x in watched if DEAD in x]
        assert len(rows) >= 2 and all(r[2] == "FORCED_OPEN" for r in rows), rows
        assert main(["status", "--url", base + "/status.json", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert any(b["state"] == "forced_open" for s in doc["services"] for b in s["breakers"]
                   if b["endpoint"] == DEAD)
    assert main(["status", "--url", base, "--timeout", "1"]) == 1  # the service is gone
    assert "cannot read" in capsys.readouterr().err
    assert main(["status", "--url", base, "--watch", "0"]) == 2
    assert "--watch 0.0: expected seconds > 0" in capsys.readouterr().err


@contextlib.contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:  # bounded: 10 s
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_asgi_in_uvicorn_under_a_root_path_serves_json_page_and_forcing(
        cache: Memcache) -> None:
    status = asgi_app(token=TOKEN)

    async def mounted(scope: Any, receive: Any, send: Any) -> None:
        # What a router's Mount does: the prefix moves into root_path.
        if scope["type"] == "http" and scope["path"].startswith(MOUNT):
            scope = {**scope, "root_path": MOUNT}
        await status(scope, receive, send)

    with _uvicorn(mounted) as url:
        base = url + MOUNT
        assert _state(base) == "closed"
        code, _, page = request(base + "/")
        assert code == 200 and b'"/resilience/force"' in page
        assert _force(base, "open", token="nope")[0] == 401
        assert _force(base, "open")[0] == 200 and _state(base) == "forced_open"
        code, _, _ = request(base + "/force", method="POST", body={"x": "y" * 5000},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 413
