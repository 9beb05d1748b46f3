"""The Cassandra wrapper in a few lines: a real local node, a prepared read, paging, an
LWT that is not applied (a result), then the node frozen: every read ends at its budget,
the breaker opens and rejects in microseconds, and reads come back after the thaw.

Run: .venv/bin/python examples/cassandra_basic.py   (needs Cassandra installed:
python -m resilience servers install cassandra; the node takes 5-10 s to start)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import resilience
from resilience.clients.cassandra import Cassandra
from resilience.servers.cassandra import Cassandra as CassandraNode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node = CassandraNode(Path(tmp)).start()
        try:
            db = Cassandra([f"{node.host}:{node.port}"], timeout=0.1, environ={})  # opens nothing
            # Schema changes wait for agreement: give them a budget of their own.
            db.execute("CREATE KEYSPACE demo WITH replication = "
                       "{'class': 'SimpleStrategy', 'replication_factor': 1}", timeout=10.0)
            db.execute("CREATE TABLE demo.users (id int PRIMARY KEY, name text)", timeout=10.0)
            insert = db.prepare("INSERT INTO demo.users (id, name) VALUES (?, ?)", timeout=5.0)
            db.execute_concurrent(insert, [(i, f"user {i}") for i in range(20)], timeout=5.0)
            get = db.prepare("SELECT name FROM demo.users WHERE id = ?", timeout=5.0)
            print("read:", db.execute(get, (7,)).one().name, "from", db.endpoints[1])
            print("all rows, 5 per page:", len(db.execute("SELECT id FROM demo.users",
                                                       fetch_size=5, timeout=2.0).all()))
            lwt = "INSERT INTO demo.users (id, name) VALUES (7, 'again') IF NOT EXISTS"
            print("LWT applied:", db.execute(lwt, timeout=2.0).was_applied)  # False: a result

            node.freeze()  # the JVM hangs; its sockets stay open
            for _ in range(12):
                start = time.monotonic()
                try:
                    db.execute(get, (7,))
                except resilience.ResilienceError as exc:
                    ms = (time.monotonic() - start) * 1000
                    print(f"{ms:8.2f} ms  {type(exc).__name__}")
            node.thaw()
            time.sleep(1.2)  # the breaker's open interval; the next read is the probe
            print("after thaw:", db.execute(get, (7,), timeout=2.0).one().name)
            db.close()
        finally:
            node.kill()


if __name__ == "__main__":
    main()
