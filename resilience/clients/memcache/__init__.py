"""memcached: :class:`Memcache` (pymemcache, threads) and :class:`AsyncMemcache` (asyncio).

Importing this package imports no driver: pymemcache is imported by the first call.
"""

from resilience.clients.memcache._async import AsyncMemcache
from resilience.clients.memcache._common import IDEMPOTENT, READS
from resilience.clients.memcache._options import MemcacheOptions
from resilience.clients.memcache._sync import Memcache, error_map

__all__ = ["IDEMPOTENT", "READS", "AsyncMemcache", "Memcache", "MemcacheOptions", "error_map"]
