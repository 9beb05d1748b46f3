"""Close wakes a blocked publish, a forked child publishes on its own connections, and
hundreds of faulted publishes leak no socket and no thread."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from resilience.clients.nsq import AsyncPublisher, Publisher
from resilience.errors import BackendUnavailableError, ResilienceError

from .conftest import FAST, MakePub, message_count, new_topic, open_fds, thread_count, timed


def test_close_wakes_a_publish_blocked_on_a_frozen_nsqd(nsq: Any) -> None:
    nsqd = nsq.nsqds[0]
    pub = Publisher([nsqd.tcp_address], **FAST)
    topic = new_topic()
    pub.publish(topic, b"warm", timeout=2.0)
    outcome: list[Any] = []
    nsqd.freeze()
    try:
        worker = threading.Thread(target=lambda: outcome.append(
            timed(lambda: pub.publish(topic, b"x", timeout=5.0))))
        worker.start()
        time.sleep(0.2)
        pub.close()
        worker.join(2.0)
    finally:
        nsqd.thaw()
    wall, error = outcome[0]
    assert isinstance(error, BackendUnavailableError) and "closed" in str(error)
    assert wall < 1.0


def test_aclose_wakes_an_async_publish_blocked_on_a_frozen_nsqd(nsq: Any) -> None:
    nsqd = nsq.nsqds[0]

    async def main() -> tuple[float, ResilienceError | None]:
        pub = AsyncPublisher([nsqd.tcp_address], **FAST)
        topic = new_topic()
        await pub.publish(topic, b"warm", timeout=2.0)
        nsqd.freeze()
        began = time.monotonic()
        task = asyncio.ensure_future(pub.publish(topic, b"x", timeout=5.0))
        await asyncio.sleep(0.2)
        await pub.aclose()
        try:
            await asyncio.wait_for(task, 2.0)
        except ResilienceError as exc:
            return time.monotonic() - began, exc
        return time.monotonic() - began, None

    try:
        wall, error = asyncio.run(main())
    finally:
        nsqd.thaw()
    assert isinstance(error, BackendUnavailableError) and wall < 1.0


def test_a_forked_child_publishes_on_its_own_connections(nsq: Any) -> None:
    nsqd = nsq.nsqds[0]
    pub = Publisher([nsqd.tcp_address], **FAST)
    topic = new_topic()
    pub.publish(topic, b"parent", timeout=2.0)
    pid = os.fork()
    if pid == 0:  # the child: exit status says whether its publishes worked
        code = 1
        try:
            for _ in range(3):
                pub.publish(topic, b"child", timeout=2.0)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pub.publish(topic, b"parent again", timeout=2.0)  # the parent's connection still works
    pub.close()
    assert message_count(nsqd.http_address, topic) == 5


def test_faulted_publishes_leak_no_socket_and_no_thread(
        nsq: Any, make_publisher: MakePub) -> None:
    dead = "127.0.0.1:1"
    pub = make_publisher([dead, nsq.nsqds[0].tcp_address], breaker_enabled=False)
    topic = new_topic()
    pub.publish(topic, b"warm", timeout=2.0)
    fds, threads = open_fds(), thread_count()
    for _ in range(300):
        pub.publish(topic, b"x")  # each one fails on the dead nsqd first
    nsq.nsqds[0].freeze()
    try:
        for _ in range(3):
            timed(lambda: pub.publish(topic, b"y", timeout=0.05))
    finally:
        nsq.nsqds[0].thaw()
    pub.publish(topic, b"z", timeout=2.0)
    assert open_fds() <= fds + 1 and thread_count() <= threads
