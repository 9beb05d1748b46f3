"""The ketama ring: stable, balanced, and moves few keys when the node list changes."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from resilience.clients.memcache._ring import HashRing

NODES = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
KEYS = [f"user:{i}".encode() for i in range(6000)]


def test_same_key_same_node_across_ring_instances() -> None:
    a, b = HashRing(NODES), HashRing(NODES)
    assert [a.index(k) for k in KEYS[:500]] == [b.index(k) for k in KEYS[:500]]


def test_keys_spread_over_every_node_within_a_third_of_fair_share() -> None:
    counts = Counter(HashRing(NODES).index(k) for k in KEYS)
    assert set(counts) == {0, 1, 2}
    for n in counts.values():
        assert abs(n - 2000) < 2000 / 3


def test_adding_a_fourth_node_moves_only_about_a_quarter_of_keys() -> None:
    three, four = HashRing(NODES), HashRing([*NODES, "10.0.0.4:11211"])
    moved = [k for k in KEYS if NODES[three.index(k)] != four.nodes[four.index(k)]]
    assert len(moved) < len(KEYS) * 0.35
    # every moved key went to the new node, none between old nodes
    assert all(four.index(k) == 3 for k in moved)


def test_positions_follow_ketama_md5_points() -> None:
    ring = HashRing(["a:1"])
    digest = hashlib.md5(b"a:1-0").digest()
    first_point = int.from_bytes(digest[:4], "little")
    assert first_point in ring._points


@pytest.mark.parametrize("nodes", [[], ["a:1", "a:1"]])
def test_refuses_empty_or_duplicate_node_lists(nodes: list[str]) -> None:
    with pytest.raises(ValueError):
        HashRing(nodes)
