"""The async pipeline loops are the sync ones plus awaits (an unasync-style check).

The twins are hand-written side by side in resilience/core/pipeline.py; this test fails
when one is changed without the other.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from resilience.core import pipeline

# async spelling -> sync spelling
UNASYNC = [
    (r"\basync def\b", "def"),
    (r"\bawait ", ""),
    (r"\bacall\b", "call"),
    (r"\b_aretry\b", "_retry"),
    (r"\b_aattempt\b", "_attempt"),
    (r"\baacquire\b", "acquire"),
    (r"\basleep\b", "sleep"),
    (r"Awaitable\[T\]", "T"),
]


def normalised(fn: Callable[..., Any], unasync: bool) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        func.body = body[1:]  # the docstrings differ on purpose
    source = ast.unparse(tree)  # drops comments and formatting
    if unasync:
        for pattern, repl in UNASYNC:
            source = re.sub(pattern, repl, source)
    return source


@pytest.mark.parametrize(
    ("sync", "async_"),
    [
        (pipeline.call, pipeline.acall),
        (pipeline._retry, pipeline._aretry),
        (pipeline._attempt, pipeline._aattempt),
    ],
    ids=["call", "retry", "attempt"],
)
def test_async_twin_is_the_sync_loop_with_awaits(
    sync: Callable[..., Any], async_: Callable[..., Any]
) -> None:
    assert normalised(async_, unasync=True) == normalised(sync, unasync=False)
