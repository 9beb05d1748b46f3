"""A pymemcache upgrade that changes what the wrapper relies on fails here, loudly.

The wrapper depends on pymemcache internals (aiobotocore hashes the functions it patches
for the same reason): ``Client._connect`` reads ``connect_timeout``/``timeout`` and
creates its socket through ``socket_module``; the command methods use ``self.sock``,
close it on any error, and read through ``_readline``/``_readvalue``/``_recv`` with
``sock.recv``. If a hash below changes, read the new source, check those assumptions in
resilience/clients/memcache/_node.py, run the fault tests, then update the hash.
"""

from __future__ import annotations

import hashlib
import inspect

from pymemcache.client import base

SOURCE_SHA1 = {
    "Client.__init__": "da3e454c80a9c2ee",
    "Client._connect": "f52373e957a86575",
    "Client.close": "6a978484f5b547d5",
    "Client.get": "9ce2107fb00e8042",
    "Client.gets": "407a16fb5bda5dd0",
    "Client.get_many": "6569bd081da4d61d",
    "Client.gets_many": "67d4fc900684743f",
    "Client.set": "bea22bd8ec3d3877",
    "Client.set_many": "013ecc18f0544f96",
    "Client.add": "d88e857acefb63ea",
    "Client.replace": "e925c9e0471d02c2",
    "Client.cas": "9a0cc8abe3dc877a",
    "Client.delete": "7ac853ba8ec14f00",
    "Client.delete_many": "6d8a88223aad41d4",
    "Client.incr": "68ce8db8194efe0c",
    "Client.decr": "31be5833cafadea0",
    "Client.touch": "0e84309a78083885",
    "Client.append": "e1be0287c1357e06",
    "Client._fetch_cmd": "dd5990556a1ec018",
    "Client._store_cmd": "84c9538333abf8a7",
    "Client._misc_cmd": "8654cab8a0a6b698",
    "_readline": "0e718a3ce44a5caf",
    "_readvalue": "3dc618a8344d77fe",
    "_recv": "a6a2ed955057156d",
}


def _digest(name: str) -> str:
    obj: object = base
    for part in name.split("."):
        obj = getattr(obj, part)
    return hashlib.sha1(inspect.getsource(obj).encode()).hexdigest()[:16]  # type: ignore[arg-type]


def test_pymemcache_functions_the_wrapper_relies_on_are_unchanged() -> None:
    changed = [name for name, sha in SOURCE_SHA1.items() if _digest(name) != sha]
    assert not changed, f"pymemcache changed {changed}: re-check memcache/_node.py assumptions"


def test_client_constructor_still_takes_the_arguments_the_wrapper_passes() -> None:
    params = inspect.signature(base.Client.__init__).parameters
    for name in ("connect_timeout", "timeout", "socket_module", "default_noreply", "no_delay",
                 "key_prefix", "serde"):
        assert name in params, name
