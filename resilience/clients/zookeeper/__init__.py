"""ZooKeeper: :class:`ZooKeeper` (kazoo, threads) and :class:`AsyncZooKeeper` (asyncio).

Importing this package imports no driver: kazoo is imported when a client is built.
"""

from resilience.clients.zookeeper._async import AsyncZooKeeper
from resilience.clients.zookeeper._common import IDEMPOTENT, WRITES, error_map
from resilience.clients.zookeeper._options import ZooKeeperOptions
from resilience.clients.zookeeper._sync import Transaction, ZooKeeper

__all__ = ["IDEMPOTENT", "AsyncZooKeeper", "WRITES", "Transaction", "ZooKeeper", "ZooKeeperOptions",
           "error_map"]
