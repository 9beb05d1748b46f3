"""Each toxic, through a FaultProxy in front of a loopback echo server: what a client sees."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import pytest

from resilience.faults.proxy import FaultProxy
from resilience.faults.toxics import (
    Bandwidth,
    Blackhole,
    Garbage,
    Latency,
    LimitData,
    Refuse,
    Reset,
    Slicer,
    SlowClose,
    Timeout,
    parse_toxic,
)

from ._echo import EchoServer

Connect = Callable[[], socket.socket]


def roundtrip(s: socket.socket, payload: bytes = b"ping") -> tuple[bytes, float]:
    """Send payload, read back exactly len(payload) bytes; returns them and the time."""
    t0 = time.monotonic()
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got, time.monotonic() - t0


def test_no_toxic_echoes_unchanged(connect: Connect) -> None:
    assert roundtrip(connect())[0] == b"ping"


def test_latency_adds_about_the_delay_to_a_round_trip(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    with proxy.toxic(Latency(latency_ms=150)):
        got, took = roundtrip(s)
    assert got == b"ping"
    assert 0.14 <= took < 0.9


def test_latency_in_both_directions_adds_up(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    proxy.add(Latency(latency_ms=100, direction="upstream"))
    proxy.add(Latency(latency_ms=100, direction="downstream"))
    assert 0.19 <= roundtrip(s)[1] < 1.0


def test_removing_latency_restores_fast_round_trips(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    with proxy.toxic(Latency(latency_ms=300)):
        assert roundtrip(s)[1] >= 0.29
    assert roundtrip(s)[1] < 0.2


def test_blackhole_hangs_an_established_connection_which_stays_open(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    assert roundtrip(s)[0] == b"ping"
    s.settimeout(0.3)
    with proxy.toxic(Blackhole()):
        s.sendall(b"lost")
        with pytest.raises(TimeoutError):
            s.recv(10)
        assert proxy.counters().active == 1
    s.settimeout(1.0)
    assert roundtrip(s, b"back")[0] == b"back"


def test_upstream_blackhole_never_reaches_the_server(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    s.settimeout(0.3)
    with proxy.toxic(Blackhole(direction="upstream")):
        s.sendall(b"x" * 100)
        with pytest.raises(TimeoutError):
            s.recv(10)
    c = proxy.counters()
    assert c.upstream_bytes == 100 and c.upstream_forwarded == 0


def test_timeout_toxic_closes_the_connection_after_the_delay(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    with proxy.toxic(Timeout(timeout_ms=200)):
        t0 = time.monotonic()
        s.sendall(b"hello")
        assert s.recv(10) == b""
        assert 0.18 <= time.monotonic() - t0 < 0.9


def test_reset_at_connect_gives_connection_reset(proxy: FaultProxy, connect: Connect) -> None:
    with proxy.toxic(Reset()), pytest.raises(ConnectionResetError):
        s = connect()  # the RST may even beat connect()'s own completion check
        s.sendall(b"x")
        s.recv(10)


def test_reset_at_connect_lets_no_byte_reach_the_server(proxy: FaultProxy) -> None:
    """A request sent before the proxy even connected upstream still never arrives."""
    proxy.add(Reset())
    for _ in range(5):
        with contextlib.suppress(OSError), socket.create_connection(proxy.address, 1) as s:
            s.sendall(b"set k")
            s.recv(10)
    assert proxy.wait_until(lambda c: c.closed == 5)
    assert proxy.counters().upstream_forwarded == 0


def test_reset_mid_stream_after_bytes(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    with proxy.toxic(Reset(after_bytes=4)):
        got = b""
        with pytest.raises(ConnectionResetError):
            s.sendall(b"abcdefgh")
            while True:
                chunk = s.recv(10)
                if not chunk:
                    break
                got += chunk
        assert got in (b"", b"abcd")  # the first 4 bytes may or may not beat the RST


def test_refuse_gives_connection_refused_and_removal_listens_again(
    proxy: FaultProxy, connect: Connect
) -> None:
    live = connect()
    with proxy.toxic(Refuse()):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=1.0)
        assert roundtrip(live)[0] == b"ping"  # live connections go on
    assert roundtrip(connect())[0] == b"ping"


def test_garbage_changes_every_byte_but_not_the_length(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    with proxy.toxic(Garbage()):
        got, _ = roundtrip(s, b"hello world")
    assert len(got) == 11
    assert all(a != b for a, b in zip(got, b"hello world", strict=True))


def test_limit_data_closes_after_n_bytes(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    with proxy.toxic(LimitData(limit_bytes=5)):
        s.sendall(b"0123456789")
        got = b""
        while chunk := s.recv(100):
            got += chunk
    assert got == b"01234"


def test_slicer_delivers_many_small_chunks(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    with proxy.toxic(Slicer(average_size=4, delay_us=20_000)):
        s.sendall(b"x" * 40)
        chunks = []
        got = 0
        while got < 40:
            chunk = s.recv(100)
            chunks.append(chunk)
            got += len(chunk)
    assert len(chunks) >= 4  # a loaded client may read two slices at once, not all ten
    assert max(len(c) for c in chunks) < 40


def test_bandwidth_transfer_takes_at_least_size_over_rate(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    with proxy.toxic(Bandwidth(rate_kbps=100)):  # 100 KB/s
        got, took = roundtrip(s, b"b" * 30_000)
    assert got == b"b" * 30_000
    assert took >= 0.28


def test_slow_close_delays_the_close_the_client_sees(proxy: FaultProxy, connect: Connect) -> None:
    s = connect()
    with proxy.toxic(SlowClose(delay_ms=300, direction="downstream")):
        s.shutdown(socket.SHUT_WR)  # echo server closes; the proxy holds the close back
        t0 = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - t0 >= 0.28


def test_seeded_probability_replays_the_same_pattern(echo: EchoServer) -> None:
    """Same seed, same connections: the same ones are hit, with the same garbage."""

    def replies(seed: int) -> list[bytes]:
        out = []
        with FaultProxy(echo.address, seed=seed) as p:
            p.add(Garbage(probability=0.5))
            for _ in range(12):
                with socket.create_connection(p.address, timeout=2) as s:
                    out.append(roundtrip(s, b"abcdefgh")[0])
        return out

    first = replies(42)
    assert first == replies(42)
    hit = [r != b"abcdefgh" for r in first]
    assert True in hit and False in hit
    assert first != replies(43)


def test_same_name_twice_is_rejected(proxy: FaultProxy) -> None:
    proxy.add(Latency())
    with pytest.raises(ValueError, match="latency_downstream"):
        proxy.add(Latency())


def test_reset_after_a_delay_resets_a_working_connection(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    with proxy.toxic(Reset(after_ms=200)):
        assert roundtrip(s)[0] == b"ping"  # still fine before the delay
        time.sleep(0.3)
        with pytest.raises(ConnectionResetError):
            s.sendall(b"x")
            s.recv(1)


def test_parse_toxic_builds_typed_settings() -> None:
    t = parse_toxic("latency:latency_ms=25,jitter_ms=5,direction=upstream,probability=0.5")
    assert t == Latency(latency_ms=25.0, jitter_ms=5.0, direction="upstream", probability=0.5)
    assert parse_toxic("limit_data:limit_bytes=7") == LimitData(limit_bytes=7)
    assert parse_toxic("refuse") == Refuse()


@pytest.mark.parametrize(
    ("make", "match"),
    [(lambda: Latency(latency_ms=-1), "latency_ms=-1"),
     (lambda: Blackhole(probability=1.5), "probability"),
     (lambda: Blackhole(direction="both"), "upstream, downstream"),
     (lambda: Bandwidth(rate_kbps=0), "rate_kbps"),
     (lambda: Slicer(average_size=4, size_variation=4), "size_variation"),
     (lambda: Garbage(ratio=2), "ratio")],
)
def test_bad_settings_raise_naming_the_field(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_removing_a_long_latency_releases_the_held_reply_at_once(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    slow = proxy.add(Latency(latency_ms=10_000))
    t0 = time.monotonic()
    s.sendall(b"held")
    time.sleep(0.2)
    proxy.remove(slow)
    assert s.recv(4) == b"held"
    assert time.monotonic() - t0 < 1.0


def test_removing_bandwidth_restores_full_speed_mid_transfer(
    proxy: FaultProxy, connect: Connect
) -> None:
    s = connect()
    s.settimeout(3)
    limit = proxy.add(Bandwidth(rate_kbps=10))  # 60 KB would take 6 s
    t0 = time.monotonic()
    s.sendall(b"z" * 60_000)
    time.sleep(0.3)
    proxy.remove(limit)
    got = 0
    while got < 60_000:
        got += len(s.recv(65536))
    assert time.monotonic() - t0 < 2.0
