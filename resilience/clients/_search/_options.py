"""The options both search clients share; each registers its own copy under its name."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from resilience.config import ClientOptions, HedgeOptions, group, option

__all__ = ["SearchOptions", "check_host", "parse_host"]


def parse_host(item: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a ``http(s)://host:port`` URL or a bare ``host:port``.

    Raises:
        ValueError: not a host with a port from 1 to 65535, or credentials in the URL
            (they belong in the username/password or api_key options, which are secret).
    """
    text = item.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("a URL without credentials (use the username/password or "
                         "api_key options)")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port:
        raise ValueError("http(s)://host:port or host:port, with a port from 1 to 65535")
    if parts.path not in ("", "/"):
        raise ValueError("a URL without a path")
    return parts.scheme, parts.hostname, port


def check_host(item: str) -> None:
    """Validate one ``hosts`` item (ValueError saying what is expected)."""
    parse_host(item)


@dataclass(frozen=True, slots=True)
class SearchOptions(ClientOptions):
    """Elasticsearch / OpenSearch options; the driver's own retries and sniffing are off."""

    hosts: tuple[str, ...] = option(
        ("http://127.0.0.1:9200",), "HOSTS", "list",
        "nodes as http(s)://host:port (or host:port), comma separated; each has its own "
        "breaker", client_only=True, validate=check_host, item="http(s)://host:port",
    )
    api_key: str | None = option(
        None, "API_KEY", "str", "API key (the base64 'id:key' form)", client_only=True,
        secret=True, optional=True,
    )
    username: str | None = option(
        None, "USERNAME", "str", "basic auth user", client_only=True, optional=True,
    )
    password: str | None = option(
        None, "PASSWORD", "str", "basic auth password", client_only=True, secret=True,
        optional=True,
    )
    verify_certs: bool = option(
        True, "VERIFY_CERTS", "bool", "verify the server certificate (https hosts)",
        client_only=True,
    )
    ca_certs: str | None = option(
        None, "CA_CERTS", "str", "CA bundle file for https hosts", client_only=True,
        optional=True,
    )
    client_cert: str | None = option(
        None, "CLIENT_CERT", "str", "client certificate file (TLS client auth)",
        client_only=True, optional=True,
    )
    client_key: str | None = option(
        None, "CLIENT_KEY", "str", "client key file (TLS client auth)", client_only=True,
        optional=True,
    )
    pool_size: int = option(
        10, "POOL_SIZE", "int", "connections kept per node", min=1, client_only=True
    )
    pool_timeout: float = option(
        0.0, "POOL_TIMEOUT_MS", "duration",
        "wait for a free pooled connection at most this long; 0 rejects at once",
        min=0.0, client_only=True,
    )
    hedge: HedgeOptions = group(  # noqa: RUF009
        HedgeOptions, "HEDGE", "hedged get and search: a second request to another node"
        " (docs/hedging.md)"
    )
