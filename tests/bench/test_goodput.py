"""`resilience bench goodput`: a tiny run against real memcached, its report, its input
checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilience.bench.goodput import Settings, run_goodput
from resilience.bench.goodput_load import OUTCOMES, classify
from resilience.bench.goodput_report import PHASES, goals, markdown, write_all
from resilience.cli import main


def test_a_reply_is_classified_by_status_and_source_header() -> None:
    ok = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nX-Source: %s\r\n\r\nv"
    assert OUTCOMES[classify(ok % b"hit")] == "hit"
    assert OUTCOMES[classify(ok % b"fallback")] == "fallback"
    assert OUTCOMES[classify(b"HTTP/1.0 500 Oops\r\nX-Source: hit\r\n\r\n")] == "http-error"
    assert OUTCOMES[classify(b"")] == "http-error"


@pytest.mark.parametrize(("change", "named"), [
    ({"modes": ("threads",)}, "threads"),
    ({"subjects": ("wrapper", "redis")}, "redis"),
    ({"outages": (0.0,)}, "outages"),
    ({"concurrency": 0}, "concurrency"),
])
def test_bad_settings_are_refused_naming_the_setting(change: dict[str, Any],
                                                     named: str) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match=named):
        replace(Settings(), **change).validate()


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "goodput", "--modes", "threads"]) == 2
    assert "threads" in capsys.readouterr().err
    assert main(["bench", "goodput", "--datastores", "redis"]) == 2
    assert "redis" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(90)  # ~10 s here; the bound is for a loaded machine
def test_tiny_run_reports_every_phase_and_the_wrapper_outlives_the_hang(
        memcached: Any, tmp_path: Path) -> None:
    """A 2 s freeze of the real memcached: raw pymemcache with its defaults answers
    (almost) nothing while it lasts, the wrapper keeps serving its fallback, and after
    the thaw it reads the cache again."""
    settings = Settings(modes=("sync",), outages=(2.0,),
                        subjects=("raw-default", "wrapper", "fallback"),
                        healthy=1.0, healed=2.0, concurrency=4, think=0.02)
    result = run_goodput(settings, servers={"memcached": memcached})
    assert memcached.is_running() and not memcached.frozen  # left running, thawed
    (run,) = result["runs"]
    assert (run["datastore"], run["mode"], run["outage_s"]) == ("memcached", "sync", 2.0)
    assert set(run["subjects"]) == {"raw-default", "wrapper", "fallback"}
    for name, subject in run["subjects"].items():
        assert set(subject["phases"]) == set(PHASES)
        healthy = subject["phases"]["healthy"]
        assert healthy["good"] > 0 and healthy["threads_max"] >= 1, name
        assert len(run["timeline"]["goodput_per_s"][name]) > 0
    raw = run["subjects"]["raw-default"]["phases"]["hung"]
    wrapper = run["subjects"]["wrapper"]
    assert raw["timeouts"] > 0
    # Loose: a hung raw client serves ~0/s; the wrapper ~ its healthy rate.
    assert wrapper["phases"]["hung"]["goodput_per_s"] > 3 * raw["goodput_per_s"] + 5
    assert wrapper["phases"]["healthy"]["hits"] > 0
    assert wrapper["first_hit_after_heal_s"] is not None  # it read the cache again
    assert run["subjects"]["fallback"]["phases"]["healthy"]["hits"] == 0
    assert [g["goal"].split()[0] for g in goals(run)] == ["hung-phase", "first"]
    assert "## memcached, sync service, 2 s outage" in markdown(result)
    paths = write_all(result, tmp_path / "out")
    assert [p.name for p in paths] == ["results.md", "results.json", "goodput.png"]
    assert json.loads(paths[1].read_text())["runs"][0]["subjects"].keys() == {
        "raw-default", "wrapper", "fallback"}


@pytest.mark.parametrize("datastore", ["nsq", "opensearch", "elasticsearch", "cassandra"])
def test_every_datastore_has_a_sync_control_and_no_async_service_yet(datastore: str) -> None:
    """The control never touches the (here absent) server; an async service of a
    datastore without one is refused naming the datastore."""
    from resilience.bench.goodput_readers import async_reader, sync_reader

    Settings(datastores=(datastore,), modes=("sync",)).validate()
    control = sync_reader(datastore, "fallback", "127.0.0.1:9")
    with pytest.raises(Exception, match="always-fallback"):
        control("key")
    with pytest.raises(ValueError, match=datastore):
        async_reader(datastore, "wrapper", "127.0.0.1:9")


def test_an_unknown_datastore_is_refused_by_the_reader_factory() -> None:
    from resilience.bench.goodput_stores import store_reader

    with pytest.raises(ValueError, match="redis"):
        store_reader("redis", "wrapper", "127.0.0.1:9", 0.1)
