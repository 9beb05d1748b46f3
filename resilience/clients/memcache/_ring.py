"""Placement of keys on memcached nodes: libmemcached's ketama, or pymemcache's HashClient.

Services in other languages share memcached pools with Python ones, so a key must land on
the node the other clients pick, exactly. Two placements (option ``placement``):

``ketama`` (the default), :class:`HashRing`: the continuum of libmemcached with
``MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED``, which is what PHP's memcached extension calls
``Memcached::OPT_LIBKETAMA_COMPATIBLE`` and pylibmc the ``ketama_weighted`` behavior. Every
rule below is read from libmemcached's source (awesomized/libmemcached, 1.1.x):

- node names: ``host:port`` as configured, the host as written (a name is not resolved;
  ``[v6]`` loses its brackets), so every service must list the same hosts;
- points per node: 160 for equal weights (``MEMCACHED_POINTS_PER_SERVER_KETAMA``,
  include/libmemcached-1.0/defaults.h), computed as libmemcached does it in 32-bit floats,
  ``floor(weight / total * 160 / 4 * nodes + 1e-10) * 4`` (src/libmemcached/hosts.cc,
  ``update_continuum``): with 25, 47, 50 or 100 equal nodes, among others, the float
  rounding gives 156 points, and so does this ring;
- the string hashed for point group ``i`` (0, 1, ...) is ``"host-i"`` when the port is
  memcached's default 11211 (``MEMCACHED_DEFAULT_PORT``) and ``"host:port-i"`` otherwise
  (``update_continuum``);
- each MD5 digest of that string gives four points, bytes 0-3, 4-7, 8-11, 12-15, each read
  little endian (``ketama_server_hash``, src/libmemcached/hosts.cc);
- points are sorted by value, then by node order (``continuum_item_cmp``, same file);
- a key's hash is the first four bytes of ``MD5(key)``, little endian: the weighted
  behavior sets the key hash to MD5 (src/libmemcached/behavior.cc) and ``hashkit_md5``
  reads those bytes (src/libhashkit/md5.cc); the wrapper's ``key_prefix`` is not hashed,
  as libmemcached's namespace is not by default;
- the key belongs to the first point whose value is ``>=`` the key's hash, and to the
  first point of the continuum past the last one (``dispatch_host``,
  src/libmemcached/hash.cc).

``pymemcache``, :class:`RendezvousRing`: what ``pymemcache.client.hash.HashClient`` does with
its default hasher (pymemcache/client/rendezvous.py, ``RendezvousHash``): each node scores
``murmur3_32("host:port-" + key)`` with seed 0 and the highest score wins, the greater name
on a tie. HashClient hashes a *str* key; a bytes key it formats as ``b'...'`` first, so
this ring matches HashClient called with the key as str (its bytes here, as UTF-8).

Keys never move while the wrapper runs: a failing node's keys fail fast through the node's
circuit breaker (or read as misses when ``fail_open``) instead of moving to another node,
which would serve stale or missing values and thrash when the node flaps. Changing the
node list moves only the keys of the nodes added or removed (about 1/N of them each).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from collections.abc import Sequence
from typing import Protocol

__all__ = ["PLACEMENTS", "HashRing", "RendezvousRing", "Ring", "make_ring"]

PLACEMENTS = ("ketama", "pymemcache")
"""The values of the ``placement`` option."""

_DEFAULT_PORT = 11211  # MEMCACHED_DEFAULT_PORT: left out of the hashed node name
_POINTS_PER_SERVER = 160  # MEMCACHED_POINTS_PER_SERVER_KETAMA
_POINTS_PER_HASH = 4  # four 32-bit points per MD5 digest
_F32 = struct.Struct("<f")
_LE32 = struct.Struct("<I")


class Ring(Protocol):
    """Maps a key to the index of its node, in configuration order."""

    @property
    def nodes(self) -> tuple[str, ...]: ...

    def index(self, key: bytes) -> int: ...


def make_ring(placement: str, nodes: Sequence[str]) -> Ring:
    """The ring of ``placement`` (one of :data:`PLACEMENTS`) over ``nodes``."""
    if placement == "ketama":
        return HashRing(nodes)
    if placement == "pymemcache":
        return RendezvousRing(nodes)
    raise ValueError(f"placement={placement!r}: expected one of {', '.join(PLACEMENTS)}")


def _split(nodes: Sequence[str]) -> list[tuple[str, int]]:
    if not nodes:
        raise ValueError("a hash ring needs at least one node")
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"a node is listed twice in {list(nodes)!r}")
    pairs = []
    for node in nodes:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{node!r}: expected host:port")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def _f32(x: float) -> float:
    """``x`` rounded to a C ``float``: libmemcached computes point counts in floats."""
    value: float = _F32.unpack(_F32.pack(x))[0]
    return value


def _points(weight: int, total_weight: int, live: int) -> int:
    # hosts.cc: floor((float)(pct * 160 / 4 * (float)live + 0.0000000001F)) * 4, with
    # pct = (float)weight / (float)total_weight; every step rounds to float.
    pct = _f32(_f32(weight) / _f32(total_weight))
    x = _f32(_f32(_f32(pct * _POINTS_PER_SERVER) / _POINTS_PER_HASH) * _f32(live))
    return math.floor(_f32(x + _f32(1e-10))) * _POINTS_PER_HASH


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class HashRing:
    """libmemcached's weighted ketama continuum (equal weights unless ``weights``).

    Args:
        nodes: node names (``host:port``), in configuration order; duplicates are refused.
        weights: libmemcached server weights, one per node (>= 1); ``None``: equal.

    Raises:
        ValueError: no node, a node given twice or not ``host:port``, bad weights.
    """

    __slots__ = ("_nodes", "_owners", "_points")

    def __init__(self, nodes: Sequence[str], weights: Sequence[int] | None = None) -> None:
        pairs = _split(nodes)
        if weights is None:
            weights = [1] * len(pairs)
        if len(weights) != len(pairs) or any(w < 1 for w in weights):
            raise ValueError(f"weights={list(weights)!r}: one weight >= 1 per node")
        self._nodes = tuple(nodes)
        total = sum(weights)
        ring: list[tuple[int, int]] = []
        for index, ((host, port), weight) in enumerate(zip(pairs, weights, strict=True)):
            name = host if port == _DEFAULT_PORT else f"{host}:{port}"
            for i in range(_points(weight, total, len(pairs)) // _POINTS_PER_HASH):
                digest = _md5(f"{name}-{i}".encode())
                ring.extend((p, index) for p in struct.unpack("<4I", digest))
        ring.sort()  # by value, then node index: continuum_item_cmp
        self._points = [p for p, _ in ring]
        self._owners = [i for _, i in ring]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in configuration order."""
        return self._nodes

    def index(self, key: bytes) -> int:
        """Return the index (into ``nodes``) of the node that owns ``key``."""
        slot = bisect.bisect_left(self._points, _LE32.unpack_from(_md5(key))[0])
        return self._owners[slot] if slot < len(self._points) else self._owners[0]


_M32 = 0xFFFFFFFF
_C1, _C2 = 0xCC9E2D51, 0x1B873593


def _mix(h1: int, blocks: bytes) -> int:
    """MurmurHash3 x86_32's body: mix whole little-endian 4-byte ``blocks`` into ``h1``."""
    for (k1,) in _LE32.iter_unpack(blocks):
        k1 = (k1 * _C1) & _M32
        k1 = ((k1 << 15) | (k1 >> 17)) & _M32
        h1 ^= (k1 * _C2) & _M32
        h1 = ((h1 << 13) | (h1 >> 19)) & _M32
        h1 = (h1 * 5 + 0xE6546B64) & _M32
    return h1


def _murmur3_32(h1: int, data: bytes, length: int) -> int:
    """MurmurHash3 x86_32 of a message whose blocks before ``data`` left state ``h1``
    (0 and seed 0 for a whole message); ``length`` is the whole message's length."""
    whole = len(data) & ~3
    h1 = _mix(h1, data[:whole])
    if whole < len(data):
        k1 = (int.from_bytes(data[whole:], "little") * _C1) & _M32
        k1 = ((k1 << 15) | (k1 >> 17)) & _M32
        h1 ^= (k1 * _C2) & _M32
    h1 ^= length
    h1 ^= h1 >> 16
    h1 = (h1 * 0x85EBCA6B) & _M32
    h1 ^= h1 >> 13
    h1 = (h1 * 0xC2B2AE35) & _M32
    return h1 ^ (h1 >> 16)


class RendezvousRing:
    """pymemcache ``HashClient``'s placement: rendezvous (highest random weight) hashing.

    Args:
        nodes: node names (``host:port``), in configuration order; duplicates are refused.

    Raises:
        ValueError: no node, a node given twice or not ``host:port``.
    """

    __slots__ = ("_nodes", "_order", "_prefixes")

    def __init__(self, nodes: Sequence[str]) -> None:
        names = [f"{host}:{port}" for host, port in _split(nodes)]  # HashClient's node key
        self._nodes = tuple(nodes)
        # Each node's "host:port-" prefix is fixed: hash its whole 4-byte blocks once and
        # keep the state and the bytes left over, which go in front of the key.
        self._prefixes: list[tuple[int, bytes, int]] = []
        for name in names:
            prefix = f"{name}-".encode()
            whole = len(prefix) & ~3
            self._prefixes.append((_mix(0, prefix[:whole]), prefix[whole:], len(prefix)))
        # Ties go to the greater name: visit nodes from the greatest name down, keep >.
        self._order = sorted(range(len(names)), key=names.__getitem__, reverse=True)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in configuration order."""
        return self._nodes

    def index(self, key: bytes) -> int:
        """Return the index (into ``nodes``) of the node that owns ``key``."""
        if not key.isascii():
            # HashClient hashes the str key one character at a time, keeping the low
            # byte of each code point (pymemcache/client/murmur3.py).
            key = bytes(ord(c) & 0xFF for c in key.decode("utf-8", "surrogateescape"))
        best, winner = -1, 0
        prefixes = self._prefixes
        for i in self._order:
            h1, rest, length = prefixes[i]
            score = _murmur3_32(h1, rest + key, length + len(key))
            if score > best:
                best, winner = score, i
        return winner
