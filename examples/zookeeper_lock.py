"""A ZooKeeper lock held as a lease: acquisition is bounded, and the holder checks the
lease before each step of its work, so it stops once its session is in doubt.

Run: .venv/bin/python examples/zookeeper_lock.py
(needs ZooKeeper: python -m resilience servers install zookeeper)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from resilience.clients.zookeeper import LeaseLostError, LockTimeout, ZooKeeper
from resilience.errors import ResilienceError
from resilience.servers.zookeeper import ZooKeeper as ZooKeeperServer


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ZooKeeperServer(Path(tmp)).start(timeout=30.0)
        worker = ZooKeeper(server.address, timeout=0.5, connect_timeout=5.0, environ={})
        rival = ZooKeeper(server.address, timeout=0.5, connect_timeout=5.0, environ={})
        try:
            with worker.lock("/locks/report", timeout=2.0, identifier="worker-1") as lease:
                print("acquired:", lease.node.rsplit("/", 1)[1], "valid:", lease.valid)
                start = time.monotonic()
                try:
                    rival.lock("/locks/report", timeout=0.2).acquire()
                except LockTimeout:
                    print(f"rival gave up after {time.monotonic() - start:.2f} s (bounded)")
                for step in range(3):
                    lease.check()  # raises LeaseLostError once the session is SUSPENDED
                    print("step", step, "done under the lease")
                server.freeze()  # the holder's server stops answering
                deadline = time.monotonic() + 15
                while lease.valid and time.monotonic() < deadline:
                    time.sleep(0.05)
                try:
                    lease.check()
                except LeaseLostError as exc:
                    print("stopped work:", exc.detail)
                server.thaw()
            # The release could not reach the server; it is retried in the background
            # once the session is back (or the node goes with the session).
            # The rival sat on the frozen server too: until its session is back, its
            # calls are refused at once (CircuitOpenError), so keep asking.
            deadline = time.monotonic() + 15
            left: list[str] | None = None
            while time.monotonic() < deadline:
                try:
                    left = rival.get_children("/locks/report", timeout=5.0)
                except ResilienceError:
                    left = None
                if left == []:
                    break
                time.sleep(0.1)
            print("nodes left behind:", left)
        finally:
            worker.close()
            rival.close()
            server.stop()


if __name__ == "__main__":
    main()
