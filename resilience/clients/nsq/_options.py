"""The NSQ client's options: the shared ones with NSQ's defaults, and its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from resilience.config import (
    BreakerOptions,
    ClientOptions,
    check_host_port,
    group,
    option,
    register_client,
)

__all__ = ["NsqOptions"]


@register_client("nsq")
@dataclass(frozen=True, slots=True)
class NsqOptions(ClientOptions):
    """The NSQ publisher and consumer (the nsqd protocol spoken directly)."""

    timeout: float = option(
        0.5, "TIMEOUT_MS", "duration", "default time budget of one call", min=0.001
    )
    connect_timeout: float = option(
        0.25, "CONNECT_TIMEOUT_MS", "duration", "cap of one connection attempt", min=0.001
    )
    breaker: BreakerOptions = group(  # noqa: RUF009
        lambda: BreakerOptions(slow_call_duration=0.5), "BREAKER", "circuit breaker per nsqd"
    )
    nsqd_tcp: tuple[str, ...] = option(
        ("127.0.0.1:4150",), "NSQD_TCP", "list",
        "nsqd TCP addresses, host:port, in preferred order (local first)",
        client_only=True, validate=check_host_port, item="host:port (port 1..65535)",
    )
    nsqd_http: tuple[str, ...] = option(
        ("127.0.0.1:4151",), "NSQD_HTTP", "list",
        "nsqd HTTP addresses, host:port, in preferred order (transport=http)",
        client_only=True, validate=check_host_port, item="host:port (port 1..65535)",
    )
    lookupd_http: tuple[str, ...] = option(
        ("127.0.0.1:4161",), "LOOKUPD_HTTP", "list",
        "nsqlookupd HTTP addresses (consumer discovery=lookupd)",
        client_only=True, validate=check_host_port, item="host:port (port 1..65535)",
    )
    transport: Literal["tcp", "http"] = option(
        "tcp", "TRANSPORT", "choice", "publisher transport: the TCP protocol or HTTP /pub",
        choices=("tcp", "http"), client_only=True,
    )
    discovery: Literal["nsqd", "lookupd"] = option(
        "nsqd", "DISCOVERY", "choice",
        "consumer: connect to nsqd_tcp, or ask lookupd_http who has the topic",
        choices=("nsqd", "lookupd"), client_only=True,
    )
    topic: str = option("events", "TOPIC", "str", "default topic", client_only=True)
    channel: str = option("default", "CHANNEL", "str", "default consumer channel",
                          client_only=True)
    pool_size: int = option(4, "POOL_SIZE", "int", "idle publisher connections kept per nsqd",
                            min=1, client_only=True)
    max_in_flight: int = option(16, "MAX_IN_FLIGHT", "int",
                                "consumer: messages handled at once", min=1, client_only=True)
    msg_timeout: float = option(
        60.0, "MSG_TIMEOUT_MS", "duration",
        "consumer: nsqd redelivers a message not finished or touched within this",
        min=1.0, max=900.0, client_only=True,
    )
    handler_timeout: float = option(
        30.0, "HANDLER_TIMEOUT_MS", "duration", "consumer: deadline of one handler run",
        min=0.001, client_only=True,
    )
    max_attempts: int = option(
        5, "MAX_ATTEMPTS", "int", "consumer: deliveries before a message is dead-lettered",
        min=1, max=65535, client_only=True,
    )
    requeue_delay: float = option(
        1.0, "REQUEUE_DELAY_MS", "duration",
        "consumer: requeue delay after a failure, times the attempt number", max=3600.0,
        client_only=True,
    )
    max_requeue_delay: float = option(
        60.0, "MAX_REQUEUE_DELAY_MS", "duration", "consumer: cap of one requeue delay",
        client_only=True, at_least="requeue_delay", max=3600.0,
    )
    drain_timeout: float = option(
        5.0, "DRAIN_TIMEOUT_MS", "duration",
        "consumer close: budget to finish in-flight messages before requeueing them",
        client_only=True,
    )
    dead_letter_suffix: str = option(
        ".dlq", "DEAD_LETTER_SUFFIX", "str",
        "consumer: dead-letter topic = topic + this (unless a handler or topic is given)",
        client_only=True,
    )
    dedup_window: float = option(
        86400.0, "DEDUP_WINDOW_MS", "duration",
        "how long a processed key is remembered; must exceed the redelivery horizon",
        min=1.0, max=2592000.0, client_only=True,
    )
    heartbeat_interval: float = option(
        10.0, "HEARTBEAT_INTERVAL_MS", "duration", "consumer: nsqd heartbeat interval",
        min=1.0, max=60.0, client_only=True,
    )
    lookupd_poll_interval: float = option(
        10.0, "LOOKUPD_POLL_INTERVAL_MS", "duration",
        "consumer: how often lookupd is asked for new nsqd", min=0.1, client_only=True,
    )
    reconnect_interval: float = option(
        1.0, "RECONNECT_INTERVAL_MS", "duration",
        "consumer: wait before reconnecting a lost nsqd connection", min=0.01,
        client_only=True,
    )
