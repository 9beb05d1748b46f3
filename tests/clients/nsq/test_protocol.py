"""The protocol's pure parts: framing, and what each nsqd answer means for a message."""

from __future__ import annotations

import struct

import pytest

from resilience.clients.nsq import ERRORS
from resilience.clients.nsq._proto import (
    ConnectFailed,
    ConnectTimeout,
    FrameError,
    NsqCallerError,
    ProtocolError,
    PublishFailed,
    error_frame,
    http_reply,
    mpub,
    not_published,
    parse_frames,
)
from resilience.errors import BackendTimeoutError, BackendUnavailableError


def frame(kind: int, data: bytes) -> bytes:
    return struct.pack(">lL", len(data) + 4, kind) + data


def test_frames_are_split_only_when_complete() -> None:
    buf = bytearray(frame(0, b"OK") + frame(0, b"_heartbeat_")[:6])
    assert parse_frames(buf) == [(0, b"OK")]
    buf += frame(0, b"_heartbeat_")[6:]
    assert parse_frames(buf) == [(0, b"_heartbeat_")] and not buf
    with pytest.raises(ProtocolError):
        parse_frames(bytearray(b"HTTP/1.1 200 OK\r\n"))


@pytest.mark.parametrize(("data", "kind", "unpublished"), [
    (b"E_PUB_FAILED PUB failed exiting", PublishFailed, True),
    (b"E_MPUB_FAILED MPUB failed", PublishFailed, True),
    (b"E_DPUB_FAILED DPUB failed", PublishFailed, True),
    (b"E_BAD_MESSAGE PUB message too big", NsqCallerError, False),
    (b"E_BAD_TOPIC PUB topic name", NsqCallerError, False),
    (b"E_INVALID invalid command", NsqCallerError, False),
    (b"E_AUTH_FAILED nope", FrameError, False),
])
def test_error_frames_say_whether_the_message_was_queued(
        data: bytes, kind: type, unpublished: bool) -> None:
    exc = error_frame(data)
    assert type(exc) is kind and not_published(exc) is unpublished


@pytest.mark.parametrize(("raw", "kind"), [
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\n\r\nEXITING", PublishFailed),
    (b"HTTP/1.1 400 Bad Request\r\n\r\nMSG_EMPTY", NsqCallerError),
    (b"HTTP/1.1 413 Too Big\r\n\r\nMSG_TOO_BIG", NsqCallerError),
    (b"HTTP/1.1 500 Internal\r\n\r\nINTERNAL_ERROR", FrameError),
    (b"garbage", ProtocolError),
])
def test_http_statuses_map_to_outcomes(raw: bytes, kind: type) -> None:
    with pytest.raises(kind):
        http_reply(raw)
    http_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")


def test_connect_failures_are_not_published_and_mapped() -> None:
    assert not_published(ConnectTimeout()) and not_published(ConnectFailed())
    assert not not_published(TimeoutError()) and not not_published(ConnectionResetError())
    assert ERRORS.rule(ConnectTimeout())[1] is BackendTimeoutError  # type: ignore[index]
    assert ERRORS.rule(PublishFailed("E_PUB_FAILED"))[1] is BackendUnavailableError  # type: ignore[index]
    assert ERRORS.rule(NsqCallerError())[1] is None  # type: ignore[index]


def test_mpub_encodes_count_sizes_and_bodies() -> None:
    wire = mpub(b"t", [b"ab", b"c"])
    assert wire.startswith(b"MPUB t\n")
    body = wire[len(b"MPUB t\n") + 4:]
    assert body == struct.pack(">l", 2) + struct.pack(">l", 2) + b"ab" + struct.pack(">l", 1) + b"c"
