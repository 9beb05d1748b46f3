"""The status page in a real headless browser (Debian's chromium, driven by selenium
through /usr/bin/chromedriver) against a real threaded WSGI service whose memcached is
frozen with SIGSTOP: the page shows the node's breaker OPEN within its refresh interval
of the breaker opening, and CLOSED again within its refresh interval after the thaw.
Then the page's own buttons force the breaker, with the token typed into the page, and
the page says so when the service stops answering."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.clients.memcache import Memcache
from resilience.testing._server_fixtures import required_servers

from ._serve import MOUNT, service, serving

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REFRESH = 1.0  # the page's refresh interval in these tests
# A loaded 2-core machine may stall the browser or the service this much on top of the
# refresh interval; the bound still fails if the page stops refreshing or lags a cycle.
SLACK = 1.5
TOKEN = "browser-token"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module (no selenium-manager: no download)."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        reason = "chromium is not installed: apt-get install -y chromium chromium-driver"
        if required_servers():
            pytest.fail(f"{reason} (RESILIENCE_REQUIRE_SERVERS is set)", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--window-size=1400,600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(15)
    driver.set_script_timeout(5)
    yield driver
    driver.quit()


def _row_state(driver: Any, endpoint: str) -> str | None:
    """The state text the page shows for ``endpoint``'s breaker, or None if no row."""
    text = driver.execute_script(
        "const r = [...document.querySelectorAll('#rows tr')]"
        ".find(t => t.dataset.endpoint === arguments[0]);"
        "return r ? r.querySelector('td.state').textContent : null;", endpoint)
    return None if text is None else str(text)


def _until(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll ``check`` every 20 ms until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded by timeout
        if check():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.mark.timeout(90)
def test_the_page_shows_a_frozen_nodes_breaker_open_and_then_closed_after_the_thaw(
        browser: Any, memcached: Any) -> None:
    # Open for 10 s: the breaker stays OPEN while the page is checked (no half-open flicker);
    # after the thaw the background health probe (every 0.25 s) ends it at once.
    cache = Memcache([memcached.address], environ={}, timeout=0.1, connect_timeout=0.1,
                     breaker_minimum_calls=4, breaker_window_size=4, breaker_jitter=0.0,
                     breaker_open_duration=10.0, breaker_max_open_duration=10.0,
                     breaker_slow_call_duration=1.0)
    breaker = cache.breaker(memcached.address)
    stop = threading.Event()
    try:
        cache.set("k", "v")
        with serving(service(_status(refresh=REFRESH), cache)) as url:

            def traffic() -> None:  # bounded: at most 60 s, until the test stops it
                end = time.monotonic() + 60
                while not stop.is_set() and time.monotonic() < end:
                    # A 503 (the cache call failed) is an HTTPError: expected here.
                    with contextlib.suppress(OSError), \
                            urllib.request.urlopen(url + "/get", timeout=5) as resp:
                        resp.read()
                    stop.wait(0.02)

            browser.get(url + MOUNT + "/")
            _until(lambda: _row_state(browser, memcached.address) == "CLOSED", 15,
                   "the page lists the node's breaker CLOSED")
            thread = threading.Thread(target=traffic, daemon=True)
            thread.start()

            memcached.freeze()
            opened = _until(lambda: breaker.snapshot(time.monotonic())["state"] == "open",
                            10, "the frozen node's breaker opens under traffic")
            shown = _until(lambda: _row_state(browser, memcached.address) == "OPEN",
                           REFRESH + SLACK + 5, "the page shows OPEN")
            print(f"page showed OPEN {shown - opened:.2f} s after the breaker opened")
            assert shown - opened <= REFRESH + SLACK, (
                f"the page showed OPEN {shown - opened:.2f} s after the breaker opened;"
                f" it refreshes every {REFRESH} s")

            memcached.thaw()
            healed = time.monotonic()
            closed = _until(lambda: breaker.snapshot(time.monotonic())["state"] == "closed",
                            10, "the healed node's breaker closes under traffic")
            shown = _until(lambda: _row_state(browser, memcached.address) == "CLOSED",
                           REFRESH + SLACK + 5, "the page shows CLOSED")
            print(f"page showed CLOSED {shown - closed:.2f} s after the breaker closed,"
                  f" {closed - healed:.2f} s after the thaw")
            assert shown - closed <= REFRESH + SLACK, (
                f"the page showed CLOSED {shown - closed:.2f} s after the breaker closed")
            stop.set()
            thread.join(10)
            assert not browser.find_element("id", "error").is_displayed()
    finally:
        stop.set()
        memcached.thaw()
        cache.close()


def test_the_pages_buttons_force_a_breaker_only_with_the_token(browser: Any) -> None:
    endpoint = "127.0.0.1:48"  # nothing listens there; no I/O happens in this test
    cache = Memcache([endpoint], environ={})
    try:
        with serving(service(_status(refresh=REFRESH, token=TOKEN))) as url:
            browser.get(url + MOUNT + "/")
            _until(lambda: _row_state(browser, endpoint) == "CLOSED", 15, "the row appears")

            def click(action: str) -> None:
                browser.execute_script(
                    "[...document.querySelectorAll('#rows tr')]"
                    ".find(t => t.dataset.endpoint === arguments[0])"
                    ".querySelector(`button:nth-of-type(${arguments[1]})`).click();",
                    endpoint, ("open", "closed", "reset").index(action) + 1)

            browser.find_element("id", "token").send_keys("not-the-token")
            click("open")
            _until(lambda: "refused (401)" in browser.find_element("id", "forced").text, 5,
                   "a wrong token is refused")
            assert cache.breaker(endpoint).snapshot(time.monotonic())["state"] == "closed"
            token = browser.find_element("id", "token")
            token.clear()
            token.send_keys(TOKEN)
            click("open")
            _until(lambda: _row_state(browser, endpoint) == "FORCED_OPEN", 5, "FORCED_OPEN")
            assert cache.breaker(endpoint).snapshot(time.monotonic())["state"] == "forced_open"
            click("reset")
            _until(lambda: _row_state(browser, endpoint) == "CLOSED", 5, "CLOSED after reset")
        # The service is gone: the page says it cannot refresh instead of showing stale rows
        # as if they were current.
        _until(lambda: browser.find_element("id", "error").is_displayed(), REFRESH + 5,
               "the page reports that it cannot refresh")
        assert "cannot refresh" in browser.find_element("id", "error").text
    finally:
        cache.close()


def _status(**kwargs: Any) -> Any:
    from resilience.status import wsgi_app

    return wsgi_app(environ={}, **kwargs)

