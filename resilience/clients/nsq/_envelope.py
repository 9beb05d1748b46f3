"""The idempotency-key envelope: a producer-assigned key travels with the message.

Wire format (docs/nsq.md#the-envelope)::

    b"\\x00RK1"   4 bytes, magic (a NUL first: no text payload starts like this)
    n           1 byte, the key's length, 1..255
    key         n bytes, UTF-8 (a UUID4 hex by default)
    payload     the rest: the caller's bytes, unchanged

A body that does not start with the magic has no key (``decode`` returns ``None``), so
keyed and unkeyed producers can share a topic. The key is chosen once per message and
reused on every retry of that message: nsqd gives each publish a new message id, so
only the key identifies a message published twice.
"""

from __future__ import annotations

import uuid

__all__ = ["MAGIC", "decode", "encode", "new_key"]

MAGIC = b"\x00RK1"
_HEAD = len(MAGIC) + 1


def new_key() -> str:
    """A fresh key: 32 hex characters of a random UUID."""
    return uuid.uuid4().hex


def encode(key: str, payload: bytes) -> bytes:
    """``payload`` wrapped with ``key``.

    Raises:
        ValueError: ``key`` is empty or longer than 255 bytes, or ``payload`` is not bytes.
    """
    raw = key.encode() if isinstance(key, str) else None
    if not raw or len(raw) > 255:
        raise ValueError(f"nsq idempotency key {key!r}: expected a str of 1..255 bytes")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError(f"nsq message body must be bytes, got {type(payload).__name__}")
    return b"%s%c%s%s" % (MAGIC, len(raw), raw, bytes(payload))


def decode(body: bytes) -> tuple[str | None, bytes]:
    """``(key, payload)`` of a message body; ``(None, body)`` without an envelope (or a
    truncated one)."""
    if not body.startswith(MAGIC) or len(body) < _HEAD:
        return None, body
    n = body[len(MAGIC)]
    end = _HEAD + n
    if n == 0 or len(body) < end:
        return None, body
    try:
        key = body[_HEAD:end].decode()
    except UnicodeDecodeError:
        return None, body
    return key, body[end:]
