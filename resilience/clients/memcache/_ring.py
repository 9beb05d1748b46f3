"""Consistent hashing of keys onto memcached nodes: a ketama ring.

The ring is the one libmemcached calls *ketama* (``MEMCACHED_BEHAVIOR_KETAMA`` with MD5,
equal weights), so keys land on the same node as with libmemcached-based clients given
the same ``host:port`` list:

- each node gets 160 points: for ``i`` in 0..39 the MD5 digest of ``"host:port-i"``
  gives four little-endian 32-bit points;
- a key's position is the first four bytes of ``MD5(key)``, little endian;
- the key belongs to the first point at or after its position, wrapping around.

Removing one node of N moves only that node's keys (about 1/N of them); the wrapper never
removes a node while running, though: a failing node's keys fail fast through the node's
circuit breaker (or read as misses when ``fail_open``) rather than moving to another node,
which would serve stale or missing values and thrash when the node flaps.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

__all__ = ["HashRing"]

_POINTS_PER_DIGEST = 4
_DIGESTS_PER_NODE = 40  # 160 points per node, as ketama


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class HashRing:
    """Maps keys to node indexes with a ketama ring.

    Args:
        nodes: node names (``host:port``), in configuration order; duplicates are refused.

    Raises:
        ValueError: no node, or a node given twice.
    """

    __slots__ = ("_nodes", "_owners", "_points")

    def __init__(self, nodes: Sequence[str]) -> None:
        if not nodes:
            raise ValueError("a hash ring needs at least one node")
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"a node is listed twice in {list(nodes)!r}")
        self._nodes = tuple(nodes)
        ring: list[tuple[int, int]] = []
        for index, name in enumerate(self._nodes):
            for i in range(_DIGESTS_PER_NODE):
                digest = _md5(f"{name}-{i}".encode())
                for j in range(_POINTS_PER_DIGEST):
                    point = int.from_bytes(digest[j * 4 : j * 4 + 4], "little")
                    ring.append((point, index))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [i for _, i in ring]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in configuration order."""
        return self._nodes

    def index(self, key: bytes) -> int:
        """Return the index (into ``nodes``) of the node that owns ``key``."""
        position = int.from_bytes(_md5(key)[:4], "little")
        slot = bisect.bisect_left(self._points, position)
        if slot == len(self._points):
            slot = 0
        return self._owners[slot]
