"""The suite's own process: keep the cyclic garbage collector's pauses short.

Timed tests judge a call by its wall time, and a full collection stops every thread of
the process (the GIL is held). Measured in a full run on this 2-core machine with the
servers running: full collections of the test process took up to 235 ms, over 210-270k
tracked objects; such a pause is the likely cause of a 100 ms call that took 436 ms in
CI (that call itself was not caught in one). About 143k of those objects
exist once the tests are collected (pytest, the test modules, the imports) and live to
the end, so they are moved out of the collector's reach (``gc.freeze``) after
collection: a full collection then walks only what the tests made since. The timed
helper (``tests/clients/_budget.py``) also keeps the collector off during the call it
times.
"""

from __future__ import annotations

import gc

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()
