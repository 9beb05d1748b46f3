"""``resilience control set|show|clear``: read and write a service's control node.

    resilience control set memcache.breaker=forced_open memcache.timeout_ms=50 \\
        --zk 10.0.0.1:2181 --service orders
    resilience control show --zk 10.0.0.1:2181 --service orders
    resilience control clear [memcache.breaker ...] --zk 10.0.0.1:2181 --service orders

``set`` merges into what the node holds; ``clear`` removes the keys given, or the whole
node when none is given (every process undoes what control changed). Every key and
value is checked before ZooKeeper is contacted; a write is conditional on the version
read, so two operators never lose each other's keys.

Exit codes: 0 done; 2 a bad key or value (the message names it), or ZooKeeper could
not be reached within ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]

_ATTEMPTS = 5  # conditional writes raced by another writer before giving up


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``resilience control`` to ``parser``."""
    parser.add_argument("action", choices=("set", "show", "clear"))
    parser.add_argument("settings", nargs="*", metavar="KEY[=VALUE]",
                        help="set: key=value ...; clear: keys (none: the whole node)")
    parser.add_argument("--zk", help="ZooKeeper hosts, host:port[,host:port...] "
                        "(default: RESILIENCE_ZOOKEEPER_HOSTS)")
    parser.add_argument("--service", required=True, help="the service whose node to use")
    parser.add_argument("--root", default=None, help="parent of the control nodes "
                        "(default: /resilience/control)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for ZooKeeper (default 5)")


def run(args: argparse.Namespace) -> int:
    """Do the action; returns the exit code."""
    from resilience.control import DEFAULT_ROOT, node_path, parse_assignments
    from resilience.control._schema import check_key
    from resilience.errors import ConfigError, ResilienceError

    try:
        path = node_path(args.service, args.root or DEFAULT_ROOT)
        if args.action == "set":
            if not args.settings:
                raise ConfigError("set: expected at least one key=value")
            changes: dict[str, Any] = parse_assignments(args.settings)
            drop: list[str] = []
        elif args.action == "clear":
            for key in args.settings:
                check_key(key)
            changes, drop = {}, list(args.settings)
        elif args.settings:
            raise ConfigError("show takes no settings")
        from resilience.clients.zookeeper import ZooKeeper

        with ZooKeeper(args.zk, timeout=args.timeout, connect_timeout=args.timeout) as zk:
            if args.action == "show":
                return _show(zk, path)
            return _write(zk, path, changes, drop, clear_all=args.action == "clear"
                          and not drop)
    except (ConfigError, ResilienceError) as exc:
        print(f"resilience control: {exc}", file=sys.stderr)
        return 2


def _show(zk: Any, path: str) -> int:
    from resilience.control import parse_node

    got = zk.get(path)
    if got is None:
        print(json.dumps({"path": path, "version": 0, "settings": {}}, indent=2))
        return 0
    data, stat = got
    out: dict[str, Any] = {"path": path, "version": stat.mzxid}
    try:
        out["settings"] = parse_node(data)
    except ValueError as exc:  # show what is there, and why agents reject it
        out["raw"] = data.decode("utf-8", "replace")
        out["error"] = str(exc)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def _write(zk: Any, path: str, changes: dict[str, Any], drop: list[str],
           clear_all: bool) -> int:
    from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

    from resilience.control import dumps, parse_node
    from resilience.errors import ConfigError

    for _ in range(_ATTEMPTS):
        got = zk.get(path)
        try:
            if clear_all:
                if got is not None:
                    zk.delete(path, version=got[1].version)
                print(f"cleared {path}")
                return 0
            try:
                current = parse_node(got[0]) if got is not None else {}
            except ConfigError as exc:  # a bad node is replaced, not merged into
                print(f"resilience control: replacing malformed data: {exc}", file=sys.stderr)
                current = {}
            new = {k: v for k, v in {**current, **changes}.items() if k not in drop}
            if got is None:
                zk.create(path, dumps(new), makepath=True)
            else:
                zk.set(path, dumps(new), version=got[1].version)
        except (BadVersionError, NodeExistsError, NoNodeError):
            continue  # another writer got in between: read again
        print(f"{path}: {json.dumps(new, sort_keys=True)}")
        return 0
    raise ConfigError(f"{path}: changed by another writer {_ATTEMPTS} times in a row; "
                      "try again")
