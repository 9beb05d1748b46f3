"""A requests adapter that carries the ambient deadline to the server.

::

    session = deadline_session()          # mounts DeadlineAdapter for http:// and https://
    with resilience.deadline(0.3):
        session.get("http://inventory/items", timeout=5)   # timeouts clamped to ~0.3 s

With a deadline in force, each request is refused with `DeadlineExceededError` before
anything is sent when less than 1 ms is left; otherwise it carries the remaining budget
in whole milliseconds in ``header`` (``request-timeout-ms``; a smaller value already on
the request stays), its connect and read timeouts are clamped to the remaining budget,
and a timeout that fires after the deadline passed raises `DeadlineExceededError` (the
requests error as its cause). Without a deadline the request goes through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Timeout as Urllib3Timeout

from resilience.propagation._headers import DEFAULT_HEADER
from resilience.propagation._outbound import check_spent, header_value, outbound_budget

__all__ = ["DeadlineAdapter", "deadline_session"]


def _clamp(timeout: Any, left: float) -> tuple[float, float]:
    """requests' timeout forms (None, a number, (connect, read), urllib3 Timeout)
    as a (connect, read) pair no longer than ``left``."""
    if isinstance(timeout, Urllib3Timeout):
        connect, read = timeout.connect_timeout, timeout.read_timeout
    elif isinstance(timeout, tuple):
        connect, read = timeout
    else:
        connect = read = timeout

    def one(given: Any) -> float:
        return left if not isinstance(given, int | float) else min(float(given), left)

    return one(connect), one(read)


class DeadlineAdapter(HTTPAdapter):
    """`requests.adapters.HTTPAdapter` sending the ambient deadline.

    Args:
        header: the budget header to send, whole milliseconds.
        **kwargs: passed to HTTPAdapter (pool sizes, max_retries, ...).
    """

    def __init__(self, *, header: str = DEFAULT_HEADER, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._header = header

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        endpoint = urlsplit(request.url or "").hostname
        budget = outbound_budget("http", endpoint, request.method)
        if budget is None:
            return super().send(request, stream, timeout, verify, cert, proxies)
        left, at = budget
        request.headers[self._header] = header_value(left, request.headers.get(self._header))
        try:
            return super().send(request, stream, _clamp(timeout, left), verify, cert, proxies)
        except (requests.Timeout, requests.ConnectionError) as exc:
            # A connect that timed out surfaces as ConnectionError (ConnectTimeout is both).
            check_spent(at, "http", endpoint, request.method, exc)
            raise


def deadline_session(session: requests.Session | None = None, *,
                     header: str = DEFAULT_HEADER) -> requests.Session:
    """``session`` (a new one by default) with `DeadlineAdapter` mounted for http and https."""
    session = session if session is not None else requests.Session()
    adapter = DeadlineAdapter(header=header)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
