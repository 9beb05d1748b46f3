"""Cassandra: :class:`Cassandra` (threads) and :class:`AsyncCassandra` (asyncio), on
cassandra-driver.

Importing this package imports no driver: cassandra-driver is imported when a client is
constructed, and connects on its first call.
"""

from resilience.clients.cassandra._async import AsyncCassandra
from resilience.clients.cassandra._common import CLUSTER, IDEMPOTENT
from resilience.clients.cassandra._errors import error_map
from resilience.clients.cassandra._options import CassandraOptions
from resilience.clients.cassandra._result import AsyncResult, Result
from resilience.clients.cassandra._sync import Cassandra

__all__ = ["CLUSTER", "IDEMPOTENT", "AsyncCassandra", "AsyncResult", "Cassandra",
           "CassandraOptions",
           "Result", "error_map"]
