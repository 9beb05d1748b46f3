"""The nsqd TCP protocol (V2) and HTTP publish, as bytes: no I/O here.

Just what the publisher and the consumer need. Every frame from nsqd is a 4-byte
size, a 4-byte frame type (0 response, 1 error, 2 message) and the data; a response
``_heartbeat_`` must be answered with ``NOP``. Commands are a text line, and for
PUB/MPUB/DPUB/IDENTIFY a 4-byte size and a body.

The exceptions say what a failed publish means for the message:

- :class:`ConnectFailed` (and :class:`ConnectTimeout`): nothing was sent; the message
  was **not published** and may go to another nsqd.
- :class:`PublishFailed`: nsqd answered ``E_PUB_FAILED``/``E_MPUB_FAILED``/
  ``E_DPUB_FAILED`` or HTTP 503: **not published**.
- :class:`NsqCallerError` (a ValueError): nsqd refused the request as malformed
  (``E_BAD_TOPIC``, ``E_BAD_MESSAGE``, ``E_BAD_BODY``, ``E_INVALID``, HTTP 400/413):
  the caller's mistake, never retried.
- anything else after the request was written (a timeout, a closed connection, a
  garbled reply) is **ambiguous**: nsqd may have queued the message.
"""

from __future__ import annotations

import re
import struct

__all__ = [
    "MAGIC", "NOP", "ConnectFailed", "ConnectTimeout", "FrameError", "NsqCallerError",
    "ProtocolError", "PublishFailed", "check_topic", "dpub", "http_reply", "http_request",
    "mpub", "mpub_http_body", "not_published", "parse_frames", "pub",
]

MAGIC = b"  V2"
NOP = b"NOP\n"
HEARTBEAT = b"_heartbeat_"
FRAME_RESPONSE, FRAME_ERROR, FRAME_MESSAGE = 0, 1, 2
MAX_FRAME = 64 * 1024 * 1024  # larger than nsqd's --max-msg-size default (1 MiB) allows
_NAME = re.compile(r"^[.a-zA-Z0-9_-]{1,64}(#ephemeral)?$")
_PACK_SIZE = struct.Struct(">l").pack
_HEAD = struct.Struct(">lL")


class ConnectFailed(ConnectionError):
    """The connection to nsqd could not be made: nothing was sent."""


class ConnectTimeout(ConnectFailed, TimeoutError):
    """The connection to nsqd was not made within its budget: nothing was sent."""


class ProtocolError(Exception):
    """nsqd's reply is not the NSQ protocol (or not the reply expected)."""


class FrameError(Exception):
    """nsqd answered with an error frame (or an HTTP error status)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.code = text.split(" ", 1)[0]


class PublishFailed(FrameError):
    """nsqd did not queue the message (``E_PUB_FAILED``..., HTTP 503): not published."""


class NsqCallerError(ValueError):
    """nsqd rejected the request as malformed: a bad topic, an empty or too big body."""


_CALLER_CODES = {"E_BAD_TOPIC", "E_BAD_MESSAGE", "E_BAD_BODY", "E_INVALID", "E_BAD_CHANNEL"}
_NOT_PUBLISHED_CODES = {"E_PUB_FAILED", "E_MPUB_FAILED", "E_DPUB_FAILED"}


def error_frame(data: bytes) -> Exception:
    """The exception for an error frame's ``data``."""
    text = data.decode("utf-8", "replace")
    code = text.split(" ", 1)[0]
    if code in _NOT_PUBLISHED_CODES:
        return PublishFailed(text)
    if code in _CALLER_CODES:
        return NsqCallerError(f"nsqd: {text}")
    return FrameError(text)


def not_published(exc: BaseException | None) -> bool:
    """True if ``exc`` (a driver exception) proves the message was not queued."""
    return isinstance(exc, (ConnectFailed, PublishFailed))


def check_topic(topic: str) -> bytes:
    """The wire form of a topic (or channel) name.

    Raises:
        ValueError: not 1-64 characters of ``[.a-zA-Z0-9_-]`` (plus ``#ephemeral``).
    """
    if not isinstance(topic, str) or not _NAME.match(topic):
        raise ValueError(f"nsq topic/channel name {topic!r}: expected 1-64 of [.a-zA-Z0-9_-]")
    return topic.encode()


def _body(body: bytes) -> bytes:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ValueError(f"nsq message body must be bytes, got {type(body).__name__}")
    if not body:
        raise ValueError("nsq message body must not be empty")
    return bytes(body)


def pub(topic: bytes, body: bytes) -> bytes:
    """``PUB <topic>\\n<size><body>``."""
    body = _body(body)
    return b"PUB %s\n%s%s" % (topic, _PACK_SIZE(len(body)), body)


def dpub(topic: bytes, delay_ms: int, body: bytes) -> bytes:
    """``DPUB <topic> <ms>\\n<size><body>``: deliver no sooner than ``delay_ms``."""
    body = _body(body)
    return b"DPUB %s %d\n%s%s" % (topic, delay_ms, _PACK_SIZE(len(body)), body)


def mpub(topic: bytes, bodies: list[bytes]) -> bytes:
    """``MPUB <topic>\\n<size><count>(<size><body>)*``: all or none are queued."""
    if not bodies:
        raise ValueError("mpublish needs at least one message")
    payload = mpub_http_body(bodies)
    return b"MPUB %s\n%s%s" % (topic, _PACK_SIZE(len(payload)), payload)


def mpub_http_body(bodies: list[bytes]) -> bytes:
    """``<count>(<size><body>)*``: MPUB's body, also ``/mpub?binary=true``'s."""
    parts = [_PACK_SIZE(len(bodies))]
    for body in bodies:
        body = _body(body)
        parts += (_PACK_SIZE(len(body)), body)
    return b"".join(parts)


def parse_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove every complete frame from ``buf``: ``[(frame_type, data), ...]``.

    Raises:
        ProtocolError: a size or frame type no nsqd sends.
    """
    frames = []
    while len(buf) >= 8:
        size, kind = _HEAD.unpack_from(buf)
        if size < 4 or size > MAX_FRAME or kind > FRAME_MESSAGE:
            raise ProtocolError(f"bad frame header {bytes(buf[:8])!r}")
        if len(buf) < 4 + size:
            break
        frames.append((kind, bytes(buf[8:4 + size])))
        del buf[:4 + size]
    return frames


# ---- HTTP (/pub, /mpub): one request per connection, Connection: close ---------------

def http_request(host: str, path: str, body: bytes) -> bytes:
    """A complete HTTP/1.1 POST of ``body`` to ``path``."""
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
            b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n%s"
            % (path.encode(), host.encode(), len(body), body))


def http_reply(raw: bytes) -> None:
    """Check a complete HTTP reply to a publish; returns if nsqd said 200 ``OK``.

    Raises:
        PublishFailed: 503 (not published); NsqCallerError: 400/413; FrameError: any
        other status; ProtocolError: not HTTP.
    """
    head, sep, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP reply: {raw[:40]!r}")
    status = int(parts[1])
    text = body.strip().decode("utf-8", "replace")[:200]
    if status == 200 and body.strip() == b"OK":
        return
    if status == 503:
        raise PublishFailed(f"HTTP 503 {text}")
    if status in (400, 413):
        raise NsqCallerError(f"nsqd: HTTP {status} {text}")
    if status == 200:
        raise ProtocolError(f"HTTP 200 without OK: {text!r}")
    raise FrameError(f"HTTP {status} {text}")


def http_complete(raw: bytes | bytearray) -> bool:
    """True once ``raw`` holds the whole reply (headers and Content-Length bytes)."""
    head, sep, body = bytes(raw).partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False  # no length: read to EOF
