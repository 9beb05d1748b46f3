"""ZooKeeper: :class:`ZooKeeper` (kazoo, threads) and :class:`AsyncZooKeeper` (asyncio).

Importing this package imports no driver: kazoo is imported when a client is built.
"""

from resilience.clients.zookeeper._async import AsyncZooKeeper
from resilience.clients.zookeeper._common import IDEMPOTENT, WRITES, error_map
from resilience.clients.zookeeper._ids import (
    ClockMovedBackwardsError,
    IdGenerator,
    WorkerLostError,
    parse_id,
)
from resilience.clients.zookeeper._options import ZooKeeperOptions
from resilience.clients.zookeeper._recipes import (
    Election,
    Lease,
    LeaseLostError,
    Lock,
    LockTimeout,
    ReadWriteLock,
    Semaphore,
)
from resilience.clients.zookeeper._sync import Transaction, ZooKeeper
from resilience.clients.zookeeper._watches import ChildrenWatch, DataWatch

__all__ = [
    "IDEMPOTENT",
    "WRITES",
    "AsyncZooKeeper",
    "ChildrenWatch",
    "ClockMovedBackwardsError",
    "DataWatch",
    "Election",
    "IdGenerator",
    "Lease",
    "LeaseLostError",
    "Lock",
    "LockTimeout",
    "ReadWriteLock",
    "Semaphore",
    "Transaction",
    "WorkerLostError",
    "ZooKeeper",
    "ZooKeeperOptions",
    "error_map",
    "parse_id",
]
