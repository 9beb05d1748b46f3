"""OpenSearch behind the wrapper: the driver's own API, a bulk with a rejected item, and a
frozen node skipped once its breaker opens (two single-node clusters behind one client).

Run: .venv/bin/python examples/search_nodes.py
(needs OpenSearch: python -m resilience servers install opensearch; about 15 s, two JVMs)
The same code runs on Elasticsearch with resilience.clients.elasticsearch.Elasticsearch
and its own keywords (document=, query=, operations=).
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import resilience
from resilience.clients.opensearch import BulkError, OpenSearch
from resilience.servers.opensearch import OpenSearchNode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [OpenSearchNode(Path(tmp) / f"n{i}", heap_mb=256) for i in range(2)]
        with ThreadPoolExecutor(2) as pool:  # start both JVMs at once
            list(pool.map(lambda n: n.start(120), nodes))
        try:
            run([n.url for n in nodes], nodes[1])
        finally:
            for n in nodes:
                n.stop()


def run(urls: list[str], second: OpenSearchNode) -> None:
    # Opens nothing yet. The breaker judges a node after 5 calls to it (default 10).
    with OpenSearch(urls, timeout=0.2, breaker_minimum_calls=5, environ={}) as client:
        for url in urls:  # the same document on both clusters
            one = OpenSearch(url, timeout=5.0, environ={})
            one.run(lambda raw: raw.indices.create(
                index="docs", body={"settings": {"number_of_replicas": 0}}))
            one.index(index="docs", id="1", body={"title": "hello"}, refresh=True)
            one.close()
        print("get:", client.get(index="docs", id="1")["_source"])
        try:
            client.bulk(body=[{"index": {"_index": "docs", "_id": "2"}}, {"n": 1},
                              {"index": {"_index": "docs", "_id": "3"}}, {"n": "one"}],
                        timeout=5.0)
        except BulkError as exc:
            for item in exc.failed:
                print(f"bulk item {item.position} failed: {item.status} {item.error['type']}")
        second.freeze()
        try:
            for i in range(16):
                start = time.monotonic()
                try:
                    client.get(index="docs", id="1")
                    outcome = "ok"
                except resilience.ResilienceError as exc:
                    outcome = type(exc).__name__
                print(f"call {i:2}: {outcome:20} {1000 * (time.monotonic() - start):6.1f} ms")
        finally:
            second.thaw()
        state = client.breaker(urls[1].split("://")[1]).state(time.monotonic())
        print("breaker of the frozen node:", state.value)


if __name__ == "__main__":
    main()
