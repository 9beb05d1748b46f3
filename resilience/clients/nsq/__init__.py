"""NSQ: :class:`Publisher` / :class:`AsyncPublisher` (acknowledged publishes with
failover across nsqd), :class:`Consumer` / :class:`AsyncConsumer` (de-duplicating,
dead-lettering consumers) and the seen-stores they de-duplicate with.

Importing this package imports no driver: the nsqd protocol is spoken directly.
"""

from resilience.clients.nsq._async import AsyncPublisher
from resilience.clients.nsq._common import ERRORS, IDEMPOTENT
from resilience.clients.nsq._consumer import Message
from resilience.clients.nsq._consumers import AsyncConsumer, Consumer
from resilience.clients.nsq._dedup import (
    AsyncMemcacheSeenStore,
    AsyncSeenStore,
    MemcacheSeenStore,
    MemorySeenStore,
    SeenStore,
)
from resilience.clients.nsq._envelope import decode as decode_envelope
from resilience.clients.nsq._envelope import encode as encode_envelope
from resilience.clients.nsq._envelope import new_key
from resilience.clients.nsq._options import NsqOptions
from resilience.clients.nsq._sync import Publisher

__all__ = [
    "ERRORS", "IDEMPOTENT", "AsyncConsumer", "AsyncMemcacheSeenStore", "AsyncPublisher",
    "AsyncSeenStore", "Consumer", "MemcacheSeenStore", "MemorySeenStore", "Message",
    "NsqOptions", "Publisher", "SeenStore", "decode_envelope", "encode_envelope", "new_key",
]
