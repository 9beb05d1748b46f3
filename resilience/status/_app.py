"""The status app, independent of any server interface: a request in, a response out.

Routes, relative to where the app is mounted:

- ``GET /`` : the HTML page (self-contained: inline CSS and JS, no CDN, no build step),
  which fetches ``status.json`` every ``refresh`` seconds;
- ``GET /status.json`` : :func:`resilience.status.collect` as JSON;
- ``POST /force`` : force one breaker, with ``Authorization: Bearer <token>`` and a JSON
  body ``{"service": ..., "endpoint": ..., "action": "open" | "closed" | "reset",
  "operator": "<optional name for the log>"}``.

Read-only by default: with no token configured (argument ``token`` or the variable
``RESILIENCE_STATUS_TOKEN``), ``POST /force`` answers 403 and the page shows no
buttons. The token is compared in constant time; every attempt to force, accepted or
refused, is logged (logger ``resilience.status``) with who (remote address, user agent,
the optional operator name) and what. The token travels in a header, never in a cookie,
so another site cannot make a browser force a breaker (no CSRF).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from resilience.errors import ConfigError
from resilience.status._collect import FORCE_ACTIONS, check_policies, collect, force
from resilience.status._page import render_page

__all__ = ["MAX_BODY", "TOKEN_VARIABLE", "Response", "StatusApp"]

TOKEN_VARIABLE = "RESILIENCE_STATUS_TOKEN"
MAX_BODY = 4096  # a force request is a few dozen bytes; refuse anything bigger unread

log = logging.getLogger("resilience.status")

Response = tuple[int, list[tuple[str, str]], bytes]
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


def reason(status: int) -> str:
    """The HTTP reason phrase of a status this app returns."""
    return _REASONS.get(status, "")


def _json(status: int, doc: Any, extra: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return status, [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                    *extra], body


def _error(status: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    return _json(status, {"error": message}, extra)


class StatusApp:
    """Every breaker of the process, as JSON and as a self-refreshing HTML page.

    Args:
        token: the secret that allows forcing breakers; None: read
            ``RESILIENCE_STATUS_TOKEN`` (unset or empty: forcing disabled).
        refresh: seconds between the page's refreshes.
        policies: `Policy` objects to show besides every open client (clients are
            found by themselves; a bare policy is not).
        environ: the environment to read the token from (``os.environ`` when None).

    Raises:
        ConfigError: ``token`` is not a non-empty string of printable ASCII (from the
            argument or the variable), or ``refresh`` is not a
            number of seconds in [0.2, 3600].
        TypeError: an item of ``policies`` is not a `Policy`.
    """

    def __init__(self, *, token: str | None = None, refresh: float = 2.0,
                 policies: Iterable[Any] = (),
                 environ: Mapping[str, str] | None = None) -> None:
        source = "status token"
        if token is None:
            token = (os.environ if environ is None else environ).get(TOKEN_VARIABLE) or None
            source = TOKEN_VARIABLE
        elif not isinstance(token, str) or not token:
            raise ConfigError(f"status token={token!r}: expected a non-empty string"
                              f" (or None to read {TOKEN_VARIABLE})")
        if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not (
                0.2 <= refresh <= 3600):
            raise ConfigError(f"status refresh={refresh!r}: expected seconds in [0.2, 3600]")
        if token is not None and not (token.isascii() and token.isprintable()
                                      and token.strip() == token):
            # A header carries it: other characters would arrive re-encoded and never match.
            raise ConfigError(f"{source}: expected printable ASCII without surrounding"
                              " spaces (it is sent in an Authorization header)")
        self._token = None if token is None else token.encode()
        self.refresh = float(refresh)
        self.policies = check_policies(policies)

    @property
    def forcing(self) -> bool:
        """Whether forcing is enabled (a token is configured)."""
        return self._token is not None

    def collect(self) -> dict[str, Any]:
        """The ``status.json`` document now (see :func:`resilience.status.collect`)."""
        return collect(self.policies, refresh=self.refresh, forcing=self.forcing)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
               *, prefix: str = "", remote: str = "?") -> Response:
        """Answer one request. ``path`` is relative to the mount point ``prefix``;
        ``headers`` have lower-case names; ``body`` at most `MAX_BODY` bytes."""
        route = path.rstrip("/")
        if route == "":
            if method not in ("GET", "HEAD"):
                return _error(405, f"{method} / : use GET", [("Allow", "GET, HEAD")])
            page = render_page(prefix.rstrip("/"), self.refresh)
            return 200, [("Content-Type", "text/html; charset=utf-8"),
                         ("Cache-Control", "no-store")], page
        if route == "/status.json":
            if method not in ("GET", "HEAD"):
                return _error(405, f"{method} /status.json: use GET", [("Allow", "GET, HEAD")])
            return _json(200, self.collect())
        if route == "/force":
            if method != "POST":
                return _error(405, f"{method} /force: use POST", [("Allow", "POST")])
            return self._force(headers, body, remote)
        return _error(404, f"no such page: {path!r} (try /, /status.json, /force)")

    def _force(self, headers: Mapping[str, str], body: bytes, remote: str) -> Response:
        who = f"{remote} ({headers.get('user-agent', 'no user agent')})"
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            log.warning("status: refused a force from %s: body is not a JSON object", who)
            return _error(400, "the body must be a JSON object with service, endpoint, action")
        what = (f"{request.get('service')!r} {request.get('endpoint')!r}"
                f" -> {request.get('action')!r}")
        operator = request.get("operator")
        if isinstance(operator, str) and operator:
            who = f"{operator[:80]!r} from {who}"
        if self._token is None:
            log.warning("status: refused to force %s for %s: forcing is disabled", what, who)
            return _error(403, f"forcing is disabled: no token configured (token= or"
                               f" {TOKEN_VARIABLE}); the status app is read-only")
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self._token):
            log.warning("status: refused to force %s for %s: missing or wrong token", what, who)
            return _error(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                          [("WWW-Authenticate", "Bearer")])
        for field in ("service", "endpoint", "action"):
            if not isinstance(request.get(field), str) or not request[field]:
                log.warning("status: refused to force %s for %s: no %s", what, who, field)
                return _error(400, f"field {field!r}: expected a non-empty string")
        if request["action"] not in FORCE_ACTIONS:
            log.warning("status: refused to force %s for %s: bad action", what, who)
            return _error(400, f"field 'action' = {request['action']!r}: expected one of"
                               f" {', '.join(FORCE_ACTIONS)}")
        touched = force(request["service"], request["endpoint"], request["action"],
                        self.policies)
        if not touched:
            log.warning("status: %s asked to force %s: no such breaker", who, what)
            return _error(404, f"no breaker of service {request['service']!r} at endpoint"
                               f" {request['endpoint']!r}")
        log.warning("status: %s forced %s (%d breaker%s)", who, what, touched,
                    "" if touched == 1 else "s")
        return _json(200, {"forced": touched, "action": request["action"],
                           "service": request["service"], "endpoint": request["endpoint"]})
