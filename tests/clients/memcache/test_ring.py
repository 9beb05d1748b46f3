"""Key placement: exactly libmemcached's ketama, or exactly pymemcache's HashClient.

The ketama vectors come from libmemcached itself: its own compatibility test
(test/fixtures/ketama.hpp with the weighted server list of test/tests/memcached/ketama.cpp,
awesomized/libmemcached) and, for equal weights, the node indexes that libmemcached 1.1.4
(Debian's libmemcached11) returned from ``memcached_generate_hash`` with
``MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`` for the server lists below.
"""

from __future__ import annotations

from collections import Counter

import pytest
from pymemcache.client.base import normalize_server_spec
from pymemcache.client.hash import HashClient

from resilience.clients.memcache import Memcache
from resilience.clients.memcache._ring import HashRing, RendezvousRing, make_ring
from resilience.errors import ConfigError

NODES = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
KEYS = [f"user:{i}".encode() for i in range(6000)]

# libmemcached test/fixtures/ketama.hpp, ketama_test_cases (every fourth of the 99), on
# "10.0.1.1:11211 600,10.0.1.2:11211 300,...": server weights, all on the default port.
LIBMEMCACHED_SERVERS = [f"10.0.1.{i}:11211" for i in range(1, 9)]
LIBMEMCACHED_WEIGHTS = [600, 300, 200, 350, 1000, 800, 950, 100]
LIBMEMCACHED_CASES = [
    ("SVa_]_V41)", "10.0.1.7"), ("1I=cTMNTKF", "10.0.1.5"), ("/XLN0@+36;", "10.0.1.1"),
    ("P1[Ma3=K1/", "10.0.1.8"), ("cDT0)Z5P6,", "10.0.1.5"), ("`,SS]NBP,b", "10.0.1.1"),
    ("*Xc+V0P>32", "10.0.1.7"), ("=256P+;Qc8", "10.0.1.5"), (".=54)_c;=T", "10.0.1.1"),
    ("NZ@ZE=O84_", "10.0.1.7"), ("XY\\X::LX50", "10.0.1.6"), ("8(6=(T0/Z0", "10.0.1.7"),
    ("aPb3E1WD4K", "10.0.1.1"), ("UNHVP..^8H", "10.0.1.4"), ("bV2,`a.PY9", "10.0.1.1"),
    ("2;M;ES>J5/", "10.0.1.7"), ("NP:=FR\\OaA", "10.0.1.7"), ("U>*>9ZI6V5", "10.0.1.6"),
    ("?K2NF@3=IU", "10.0.1.1"), (";=ZT\\W^P+H", "10.0.1.4"), ("\\R^7=9UCG`", "10.0.1.5"),
    ("(bEIQJ:E./", "10.0.1.6"), ("\\[a\\^=V_M0", "10.0.1.6"), ("X;-F`(N?9D", "10.0.1.7"),
    ("FL;\\GWacaV", "10.0.1.4"),
]

# Equal weights: node index of "user:0" .. "user:11", as libmemcached 1.1.4 placed them.
EQUAL_WEIGHT_CASES = [
    # default port: hashed as "10.0.0.1-0", "10.0.0.1-1", ... (port left out)
    (NODES, [0, 1, 2, 2, 1, 1, 1, 1, 1, 2, 2, 0]),
    # other ports: hashed as "cache-a.internal:11212-0", ...
    (["cache-a.internal:11212", "cache-b.internal:11213", "cache-c.internal:21211"],
     [2, 1, 0, 2, 1, 0, 1, 1, 0, 2, 0, 0]),
    # mixed, and an IPv6 host (hashed without brackets: "::1-0")
    (["10.0.0.1:11211", "10.0.0.1:11212", "10.0.0.2:11211", "[::1]:11211"],
     [3, 2, 2, 3, 2, 2, 2, 3, 1, 0, 2, 0]),
]

# 25 equal nodes: libmemcached's float arithmetic gives each 156 points, not 160; these
# keys (of "session:0" .. "session:2999") are ones that 160 points would place elsewhere.
TWENTY_FIVE = [f"10.0.0.{i}:11211" for i in range(1, 26)]
TWENTY_FIVE_CASES = [("session:13", 2), ("session:53", 10), ("session:72", 18),
                     ("session:121", 23), ("session:183", 1), ("session:204", 14)]


def test_matches_libmemcached_ketama_compat_test_vectors() -> None:
    ring = HashRing(LIBMEMCACHED_SERVERS, LIBMEMCACHED_WEIGHTS)
    got = [(key, ring.nodes[ring.index(key.encode())].split(":")[0])
           for key, _ in LIBMEMCACHED_CASES]
    assert got == LIBMEMCACHED_CASES


def test_a_key_past_the_last_point_wraps_to_the_first() -> None:
    # ketama.cpp: "VDEAAAAA hashes to fffcd1b5, after the last continuum point"
    ring = HashRing(LIBMEMCACHED_SERVERS, LIBMEMCACHED_WEIGHTS)
    assert ring._points[-1] < 0xFFFCD1B5
    assert ring.index(b"VDEAAAAA") == ring._owners[0]


@pytest.mark.parametrize(("nodes", "expected"), EQUAL_WEIGHT_CASES)
def test_equal_weights_match_libmemcached(nodes: list[str], expected: list[int]) -> None:
    ring = HashRing(nodes)
    assert [ring.index(f"user:{i}".encode()) for i in range(12)] == expected


def test_points_per_node_follow_libmemcached_float_rounding() -> None:
    assert len(HashRing(NODES)._points) == 3 * 160
    ring = HashRing(TWENTY_FIVE)
    assert len(ring._points) == 25 * 156
    assert [(k, ring.index(k.encode())) for k, _ in TWENTY_FIVE_CASES] == TWENTY_FIVE_CASES


def test_same_key_same_node_across_ring_instances() -> None:
    a, b = HashRing(NODES), HashRing(NODES)
    assert [a.index(k) for k in KEYS[:500]] == [b.index(k) for k in KEYS[:500]]


def test_keys_spread_over_every_node_within_a_third_of_fair_share() -> None:
    for ring in (HashRing(NODES), RendezvousRing(NODES)):
        counts = Counter(ring.index(k) for k in KEYS)
        assert set(counts) == {0, 1, 2}
        for n in counts.values():
            assert abs(n - 2000) < 2000 / 3


@pytest.mark.parametrize("cls", [HashRing, RendezvousRing])
def test_adding_a_fourth_node_moves_only_about_a_quarter_of_keys(cls: type) -> None:
    three, four = cls(NODES), cls([*NODES, "10.0.0.4:11211"])
    moved = [k for k in KEYS if NODES[three.index(k)] != four.nodes[four.index(k)]]
    assert len(moved) < len(KEYS) * 0.35
    # every moved key went to the new node, none between old nodes
    assert all(four.index(k) == 3 for k in moved)


@pytest.mark.parametrize("servers", [
    NODES,
    ["a:1", "bb:22", "ccc:333", "dddd:4444", "[::1]:11211"],
    [f"cache-{i}.internal:11211" for i in range(12)],
])
def test_pymemcache_placement_matches_hash_client(servers: list[str]) -> None:
    client = HashClient(servers, allow_unicode_keys=True)
    ring = RendezvousRing(servers)
    keys = [k.decode() for k in KEYS[:1500]] + ["x", "ab", "abc", "clé:é", "ключ", "日本語"]
    ours = [normalize_server_spec(servers[ring.index(k.encode())]) for k in keys]
    theirs = [client._get_client(k).server for k in keys]
    assert ours == theirs


def test_the_placement_option_chooses_the_ring() -> None:
    servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211"]
    ketama, rendezvous = HashRing(servers), RendezvousRing(servers)
    client = HashClient(servers)
    keys = [f"k{i}" for i in range(200)]
    default = Memcache(servers)
    assert default.options.placement == "ketama"
    assert [default.node_for(k) for k in keys] == [servers[ketama.index(k.encode())]
                                                   for k in keys]
    by_arg = Memcache(servers, placement="pymemcache")
    by_env = Memcache(servers, environ={"RESILIENCE_MEMCACHE_PLACEMENT": "pymemcache"})
    theirs = [":".join(map(str, client._get_client(k).server)) for k in keys]
    assert [by_arg.node_for(k) for k in keys] == theirs
    assert [by_env.node_for(k) for k in keys] == theirs
    assert [rendezvous.nodes[rendezvous.index(k.encode())] for k in keys] == theirs
    with pytest.raises(ConfigError, match="placement"):
        Memcache(servers, placement="modula")


def test_make_ring_refuses_an_unknown_placement() -> None:
    assert isinstance(make_ring("ketama", NODES), HashRing)
    assert isinstance(make_ring("pymemcache", NODES), RendezvousRing)
    with pytest.raises(ValueError, match="placement"):
        make_ring("modula", NODES)


@pytest.mark.parametrize("nodes", [[], ["a:1", "a:1"], ["a"], ["a:b"]])
@pytest.mark.parametrize("cls", [HashRing, RendezvousRing])
def test_refuses_empty_duplicate_or_portless_node_lists(cls: type, nodes: list[str]) -> None:
    with pytest.raises(ValueError):
        cls(nodes)


@pytest.mark.parametrize("weights", [[1, 2], [1, 0, 1]])
def test_refuses_weights_that_do_not_fit_the_nodes(weights: list[int]) -> None:
    with pytest.raises(ValueError, match="weights"):
        HashRing(NODES, weights)
