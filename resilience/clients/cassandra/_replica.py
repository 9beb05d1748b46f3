"""The first host of a statement's plan, found as TokenAwarePolicy finds it, for less.

TokenAwarePolicy's plan (cassandra/policies.py) starts with the replicas of the
statement's routing key that are up and in the local data centre, in token-map order
(``shuffle_replicas`` is off: the driver's default and this client's). Finding the
first of them costs about 16k instructions a call (callgrind): two nested generators
(the client closes them after the first host), a ``Murmur3Token`` object, a ``bisect``
over Token objects whose every comparison is a Python call, the routing-key property
and the child policy's ``distance()`` per replica. :class:`FirstReplica` finds the same
host from the ring's token values, cached as plain ints: the routing key, one murmur3
hash, a ``bisect`` over ints, a list index.

It answers only the usual case and returns None for the rest (no routing key, another
partitioner, a keyspace the token map has not built yet, no live local replica); the
caller then walks the policy's whole plan, which handles every case.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from cassandra.metadata import MAX_LONG, MIN_LONG, Murmur3Token, murmur3
from cassandra.query import BoundStatement

__all__ = ["FirstReplica"]


class FirstReplica:
    """``find(working_keyspace, statement)``: the host TokenAwarePolicy's plan would
    yield first, or None when it must be asked (see the module docstring).

    Args:
        metadata: the cluster's metadata (its ``token_map`` is read at every call, so a
            rebuilt ring is seen at once).
        dc_policy: the DCAwareRoundRobinPolicy inside the TokenAwarePolicy (its
            ``local_dc`` decides which replicas are local, as its ``distance()`` does).
    """

    __slots__ = ("_dc", "_keyspaces", "_metadata")

    def __init__(self, metadata: Any, dc_policy: Any) -> None:
        self._metadata = metadata
        self._dc = dc_policy
        # keyspace -> (ring, its replica map, the ring's token values, the replicas of
        # each position): built from the driver's token map when it changes (checked by
        # identity at every call), replaced whole, so a thread never sees a mix.
        self._keyspaces: dict[str, tuple[Any, Any, list[int], list[Any]]] = {}

    def find(self, working_keyspace: str | None, statement: Any) -> Any:
        if type(statement) is BoundStatement:
            # BoundStatement.routing_key without the property's frame for the common
            # single-column partition key (the property for the others).
            indexes = statement.prepared_statement.routing_key_indexes
            if indexes is not None and len(indexes) == 1:
                key = statement.values[indexes[0]]
            else:
                key = statement.routing_key
        else:
            key = statement.routing_key
        keyspace = statement.keyspace or working_keyspace
        tokens = self._metadata.token_map
        if key is None or keyspace is None or tokens is None:
            return None
        known = self._keyspaces.get(keyspace)
        by_token = tokens.tokens_to_hosts_by_ks.get(keyspace)
        if known is None or known[0] is not tokens.ring or known[1] is not by_token:
            known = self._index(keyspace, tokens, by_token)
            if known is None:
                return None
        h = murmur3(key)
        point = bisect_left(known[2], h if h != MIN_LONG else MAX_LONG)
        local = self._dc.local_dc
        # Host.datacenter is a property over _datacenter: read directly (a frame less).
        for host in known[3][point]:
            if host.is_up and (host._datacenter or local) == local:
                return host
        return None

    def _index(self, keyspace: str, tokens: Any, by_token: Any
               ) -> tuple[Any, Any, list[int], list[Any]] | None:
        # Token objects hash and compare through Python methods: the ring becomes a list
        # of ints and a list of each position's replicas, looked up by position.
        ring = tokens.ring
        if not by_token or not ring or tokens.token_class is not Murmur3Token or murmur3 is None:
            return None  # not built for this keyspace yet (the driver's plan builds it)
        # A token past the last one belongs to the first position (the ring wraps): the
        # replicas list has one more item, the first one's again.
        replicas = [by_token.get(token, ()) for token in ring]
        known = (ring, by_token, [token.value for token in ring], [*replicas, replicas[0]])
        self._keyspaces[keyspace] = known
        return known
