"""nsqd + nsqlookupd through pynsq (on tornado's asyncio loop) and the HTTP API.

pynsq 0.9.1 binds to ``IOLoop.current()`` when a Reader or Writer is built; built inside
an ``async def`` test that is the test's running asyncio loop, so no thread is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any

import nsq as pynsq
import pytest

from resilience.servers.nsq import NsqCluster, Nsqd, Nsqlookupd, cluster, http_get

STEP = 10.0  # bound on each end-to-end step; loopback needs milliseconds


def _pub_http(nsqd: Nsqd, topic: str, body: bytes, timeout: float = 2.0) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://{nsqd.http_address}/pub?topic={topic}", data=body)
    with opener.open(req, timeout=timeout) as resp:
        assert resp.status == 200 and resp.read() == b"OK"


def _topic_depth(nsqd: Nsqd, topic: str) -> int:
    _, body = http_get(f"http://{nsqd.http_address}/stats?format=json&topic={topic}", 2.0)
    stats: dict[str, Any] = json.loads(body)
    topics = stats.get("topics", [])
    return sum(int(t["depth"]) for t in topics if t["topic_name"] == topic)


async def _until_lookupd_knows(nsq: NsqCluster, topic: str, producers: int) -> None:
    url = f"http://{nsq.lookupd.http_address}/lookup?topic={topic}"
    async with asyncio.timeout(STEP):
        while True:
            try:
                _, body = http_get(url, 1.0)
                if len(json.loads(body).get("producers", [])) >= producers:
                    return
            except urllib.error.HTTPError:  # 404 until some nsqd registered the topic
                pass
            await asyncio.sleep(0.05)


async def _consume(nsq: NsqCluster, topic: str, count: int) -> list[bytes]:
    """Read ``count`` messages of ``topic`` with a Reader that discovers nsqd via lookupd."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def handler(message: Any) -> bool:
        got.append(bytes(message.body))
        if len(got) >= count and not done.done():
            done.set_result(None)
        return True  # FIN

    reader = pynsq.Reader(
        topic=topic,
        channel="smoke",
        message_handler=handler,
        lookupd_http_addresses=[f"http://{a}" for a in nsq.lookupd_http_addresses],
        lookupd_poll_interval=1,
        max_in_flight=10,
    )
    try:
        async with asyncio.timeout(STEP):
            await done
    finally:
        reader.close()
    return got


async def test_writer_publishes_and_reader_consumes_via_lookupd(nsq: NsqCluster) -> None:
    """A pynsq Writer publishes to nsqd and a Reader finds it through nsqlookupd and consumes."""
    topic = f"smoke{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[bytes] = loop.create_future()
    writer = pynsq.Writer([nsq.nsqd_tcp_addresses[0]], reconnect_interval=1.0)
    try:
        async with asyncio.timeout(STEP):
            while not writer.conns:  # connects on the loop, in the background
                await asyncio.sleep(0.01)

        def on_pub(conn: Any, data: Any) -> None:
            if not acked.done():
                acked.set_result(data if isinstance(data, bytes) else repr(data).encode())

        writer.pub(topic, b"hello", callback=on_pub)
        async with asyncio.timeout(STEP):
            assert await acked == b"OK"
    finally:
        for conn in list(writer.conns.values()):
            conn.close()
    await _until_lookupd_knows(nsq, topic, producers=1)
    assert await _consume(nsq, topic, 1) == [b"hello"]


async def test_reader_consumes_from_both_nsqd(nsq: NsqCluster) -> None:
    """Messages published to each of the two nsqd all reach one Reader through discovery."""
    topic = f"both{uuid.uuid4().hex[:8]}"
    for i, nsqd in enumerate(nsq.nsqds):
        _pub_http(nsqd, topic, f"from-{i}".encode())
    await _until_lookupd_knows(nsq, topic, producers=len(nsq.nsqds))
    assert sorted(await _consume(nsq, topic, 2)) == [b"from-0", b"from-1"]


def test_frozen_nsqd_times_out_and_thawed_nsqd_answers(tmp_path: Path) -> None:
    """While frozen /ping with a short timeout times out; after thaw it says OK again."""
    with cluster(tmp_path, nsqds=1) as topo:
        nsqd = topo.nsqds[0]
        with nsqd.frozen_for():
            t0 = time.monotonic()
            with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
                http_get(f"http://{nsqd.http_address}/ping", 0.3)
            assert time.monotonic() - t0 < 1.5
        assert http_get(f"http://{nsqd.http_address}/ping", 2.0) == (200, b"OK")


def test_restart_keeps_unconsumed_messages_on_the_same_ports(tmp_path: Path) -> None:
    """Messages nobody consumed are still queued after nsqd restarts on the same ports."""
    with cluster(tmp_path, nsqds=1) as topo:
        nsqd = topo.nsqds[0]
        for i in range(3):
            _pub_http(nsqd, "durable", f"m{i}".encode())
        ports = dict(nsqd.ports)
        nsqd.restart(10)
        assert nsqd.ports == ports
        assert _topic_depth(nsqd, "durable") == 3
        topo.wait_registered(5)  # it registers with nsqlookupd again


def test_killed_nsqd_refuses_connections(tmp_path: Path) -> None:
    """After kill() the nsqd TCP port refuses new connections at once."""
    with cluster(tmp_path, nsqds=1) as topo:
        nsqd = topo.nsqds[0]
        nsqd.kill()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((nsqd.host, nsqd.ports["tcp"]), timeout=1).close()


@pytest.mark.parametrize("program", [Nsqd, Nsqlookupd])
def test_a_program_in_a_network_namespace_serves_on_its_address(
    server_in_netns: Any, program: type[Nsqd | Nsqlookupd]
) -> None:
    """nsqd and nsqlookupd with host=ns_ip, netns=name run inside the namespace: /ping
    answers on the namespace's address, and nothing listens on this side's loopback."""
    server, ns = server_in_netns(program, start_timeout=10.0)
    assert server.host == ns.ns_ip
    assert os.readlink(f"/proc/{server.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert http_get(f"http://{server.http_address}/ping", 2.0) == (200, b"OK")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.ports["tcp"]), timeout=1).close()
