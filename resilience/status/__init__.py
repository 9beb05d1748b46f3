"""A live view of every breaker of the process: JSON, a self-refreshing HTML page, and
forcing a breaker open or closed behind a token. Contract: docs/status.md.

- :func:`collect` : the JSON-able document (every open client's breakers, plus policies
  given explicitly);
- :class:`StatusApp` : routes and token checks, whatever the server interface;
- :func:`resilience.status.wsgi.wsgi_app`, :func:`resilience.status.asgi.asgi_app` :
  mount it in a WSGI or ASGI service;
- ``resilience status --url URL`` : the same view in a terminal.
"""

from resilience.status._app import TOKEN_VARIABLE, StatusApp
from resilience.status._collect import FORCE_ACTIONS, collect, force
from resilience.status.asgi import asgi_app
from resilience.status.wsgi import wsgi_app

__all__ = ["FORCE_ACTIONS", "TOKEN_VARIABLE", "StatusApp", "asgi_app", "collect", "force",
           "wsgi_app"]
