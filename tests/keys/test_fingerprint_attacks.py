"""Function fingerprints against edits a user makes: an edit that changes what a call
returns changes the fingerprint (a miss), never the other way round (a stale hit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbcache import memoize
from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.keys.code import fingerprint
from nbcache.store import LocalStore

from ..notebook_sim import run_cell

DECO = """
import functools

def deco(k):
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args):
            return fn(*args) * k
        return inner
    return wrap
"""


def _fp(source: str, name: str = "f") -> str:
    return fingerprint(run_cell(source, {})[name])


def _without_source(source: str, namespace: dict[str, Any]) -> None:
    """Defined as ``exec`` of a string defines it: no line of it in linecache."""
    exec(compile(source, "<string>", "exec"), namespace)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("def f(*args): return args", "def f(args): return args"),
        ("def f(a, *b): return b", "def f(a, b): return b"),
        ("def f(a, b): return b", "def f(a, *, b): return b"),
        ("def f(a, b): return b", "def f(a, /, b): return b"),
        ("def f(**kw): return kw", "def f(kw): return kw"),
    ],
)
def test_a_function_without_source_counts_by_its_signature_too(before: str, after: str) -> None:
    """Without source, the bytecode alone: two signatures that compile to one body are
    still two functions."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    _without_source(before, ns)
    first = fingerprint(ns["f"])
    _without_source(after, ns)
    assert fingerprint(ns["f"]) != first


def _cache(tmp_path: Path) -> Cache:
    return Cache(LocalStore(tmp_path / "store"), signer=Signer(b"fingerprint-attacks-secret-32-by"))


def test_a_helper_without_source_changing_its_signature_is_a_miss(tmp_path: Path) -> None:
    """``h(1, 2)`` is ``(2,)`` from ``def h(a, *b)`` and ``2`` from ``def h(a, b)``: a
    memoized caller returns what a plain call returns."""
    cache = _cache(tmp_path)
    ns = run_cell("def g(x):\n    return h(x, 2)\n", {})
    for source in ("def h(a, *b): return b", "def h(a, b): return b"):
        _without_source(source, ns)
        assert memoize(cache=cache)(ns["g"])(1) == ns["g"](1)


def test_a_wrapper_applied_by_a_call_counts_with_its_arguments(tmp_path: Path) -> None:
    """``memoize(deco(3)(f))`` then ``memoize(deco(4)(f))``: what the wrapper adds is in
    its closure, not in any line of ``f``."""
    cache = _cache(tmp_path)
    ns = run_cell(DECO + "\ndef f(x):\n    return x\n", {"memoize": memoize, "cache": cache})
    for k in (3, 4):
        run_cell(f"g = memoize(cache=cache)(deco({k})(f))\nplain = deco({k})(f)\n", ns)
        assert ns["g"](1) == ns["plain"](1) == k


def test_a_wrapped_global_helper_counts_with_its_arguments(tmp_path: Path) -> None:
    """A helper rebound to another wrapper of the same function is another helper."""
    cache = _cache(tmp_path)
    ns = run_cell(DECO + "\ndef base(x):\n    return x\n\ndef g(x):\n    return h(x)\n", {})
    for k in (3, 4):
        run_cell(f"h = deco({k})(base)\n", ns)
        assert memoize(cache=cache)(ns["g"])(1) == ns["g"](1) == k


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("def f(x, n=1): return x * n", "def f(x, n=2): return x * n"),
        ("def f(x, *, n=1): return x * n", "def f(x, *, n=2): return x * n"),
        (DECO + "@deco(2)\ndef f(x): return x", DECO + "@deco(3)\ndef f(x): return x"),
        (DECO + "@deco(\n    2)\ndef f(x): return x", DECO + "@deco(\n    3)\ndef f(x): return x"),
        (
            "def mk(k):\n    def f(x): return x * k\n    return f\nf = mk(1)",
            "def mk(k):\n    def f(x): return x * k\n    return f\nf = mk(2)",
        ),
        (
            "def f(x):\n    def g(y): return y + 1\n    return g(x)",
            "def f(x):\n    def g(y): return y + 2\n    return g(x)",
        ),
        (
            "def f(x):\n    def g(y=1): return y\n    return g()",
            "def f(x):\n    def g(y=2): return y\n    return g()",
        ),
        ("f = lambda x: x + 1", "f = lambda x: x + 2"),
        ("f = lambda x, n=1: x + n", "f = lambda x, n=2: x + n"),
        ("def f(x):\n    'a'\n    return f.__doc__", "def f(x):\n    'b'\n    return f.__doc__"),
        ("def f(x: int) -> int: return x", "def f(x: str) -> int: return x"),
        (
            "class C:\n    def m(self): return 1\nf = C.m",
            "class C:\n    def m(self): return 2\nf = C.m",
        ),
        ("def f(*args): return args", "def f(args): return args"),
    ],
    ids=[
        "default",
        "keyword-default",
        "decorator-argument",
        "decorator-argument-on-its-own-line",
        "closure",
        "nested-function",
        "nested-default",
        "lambda",
        "lambda-default",
        "docstring",
        "annotation",
        "method",
        "star-args",
    ],
)
def test_an_edit_that_changes_behaviour_is_a_miss(before: str, after: str) -> None:
    assert _fp(before) != _fp(after)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("def f(x):\n    # one\n    return x", "def f(x):\n    # two\n    return x"),
        ("def f(x):\n    return x", "\n\n\ndef f(x):\n\n    return x  # later, lower\n"),
    ],
    ids=["comment", "redefined-later-at-another-line"],
)
def test_the_same_code_elsewhere_or_recommented_is_a_hit(before: str, after: str) -> None:
    assert _fp(before) == _fp(after)
