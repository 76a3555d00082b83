"""Nothing from building a key or storing a result reaches the user's cell or call: it
runs as plain Python would, with one warning line."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbcache import CacheWarning, memoize
from tests.shells import close_shell, new_shell


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


class Node:
    """A linked list node: a few hundred deep broke a recursive hasher."""

    def __init__(self, nxt: Node | None) -> None:
        self.next = nxt


class Anything:
    """Answers every attribute name, as some proxies do (``inspect.unwrap`` loops on it)."""

    def __getattr__(self, name: str) -> Any:
        return Anything()


class OddReduce:
    """A ``__reduce_ex__`` that returns something pickle and hashers do not expect."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        return 42


def _chain(n: int) -> Node:
    node = None
    for _ in range(n):
        node = Node(node)
    assert node is not None
    return node


def _nested(depth: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(depth):
        out = [out]
    return out


HOSTILE = {
    "linked list of 600 nodes": lambda: _chain(600),
    "list nested 3000 deep": lambda: _nested(3000),
    "getattr answers every name": Anything,
    "Mock(spec=ndarray)": lambda: mock.Mock(spec=np.ndarray),
    "odd __reduce_ex__": OddReduce,
    "datetime64 array": lambda: np.array(["2026-01-01", "2026-06-01"], dtype="datetime64[D]"),
    "timedelta64 array": lambda: np.array([1, 2], dtype="timedelta64[s]"),
}


def _run(ip: InteractiveShell, cell: str) -> tuple[Any, list[str]]:
    """Run ``cell``; its result and the nbcache warnings it gave. Fails on any error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ip.run_cell(cell)
    assert result.error_before_exec is None and result.error_in_exec is None, result
    return result.result, [str(w.message) for w in caught if w.category is CacheWarning]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_input_runs_the_cell(ip: InteractiveShell, kind: str) -> None:
    """A cell reading a value the hasher cannot handle runs, as plain Python, and says so
    in at most one line; it never raises nbcache's own exception."""
    ip.user_ns["value"] = HOSTILE[kind]()
    result, said = _run(ip, "%%cache\nseen = type(value).__name__\nseen")
    assert result == ip.user_ns["seen"] == type(ip.user_ns["value"]).__name__
    assert len(said) <= 1 and all("\n" not in line for line in said)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_value_the_cell_binds_is_kept(ip: InteractiveShell, kind: str) -> None:
    """A cell that makes such a value completes and leaves it in the namespace."""
    ip.user_ns["make"] = HOSTILE[kind]
    _result, said = _run(ip, "%%cache\nmade = make()\ndone = 1")
    assert ip.user_ns["done"] == 1 and "made" in ip.user_ns
    assert all("\n" not in line for line in said)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_argument_runs_the_call(kind: str) -> None:
    """A memoized function called with such a value returns what the function returns."""

    @memoize
    def name_of(value: Any) -> str:
        return type(value).__name__

    value = HOSTILE[kind]()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert name_of(value) == type(value).__name__


def test_any_failure_while_hashing_runs_the_cell_uncached(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the key builder raises (here a RuntimeError), the body runs, once, with
    one warning that says the cell runs uncached."""
    from nbcache.keys import scope

    def broken(value: Any, name: str = "value") -> str:
        raise RuntimeError("hasher bug")

    monkeypatch.setattr(scope, "digest", broken)
    ip.user_ns["x"] = 1
    result, said = _run(ip, "%%cache\ny = x + 1\ny")
    assert result == 2 and ip.user_ns["y"] == 2
    assert len(said) == 1 and "uncached" in said[0] and "hasher bug" in said[0]


def test_any_failure_while_gathering_keeps_the_values(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the body ran (gathering what it bound) loses nothing: the values
    stay, the result shows, nothing is stored, one warning says so."""
    from nbcache.run import cellrun

    def broken(*args: Any) -> Any:
        raise RuntimeError("gathering bug")

    monkeypatch.setattr(cellrun, "entry_of", broken)
    result, said = _run(ip, "%%cache\nz = 41 + 1\nz")
    assert result == 42 and ip.user_ns["z"] == 42
    assert len(said) == 1 and "nothing is stored" in said[0]


def test_a_cell_drawing_on_an_existing_axes_runs_quietly(ip: InteractiveShell) -> None:
    """``fig, ax = plt.subplots()`` in one cell, ``ax.plot(...)`` in the next: the second
    reads a live axes, so it runs every time, as without the magic, and says nothing."""
    import matplotlib

    matplotlib.use("Agg")
    _run(ip, "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()")
    for _ in range(2):
        _result, said = _run(ip, "%%cache\nline, = ax.plot([1, 2, 3])\nn = len(ax.lines)")
        assert said == []
    assert ip.user_ns["n"] == 2  # it ran both times, on the live axes


def test_a_lock_as_input_still_warns(ip: InteractiveShell) -> None:
    """Other live handles (a lock, an open file) still get the one line naming them."""
    ip.user_ns["guard"] = threading.Lock()
    _result, said = _run(ip, "%%cache\nwith guard:\n    x = 1")
    assert len(said) == 1 and "guard" in said[0] and "--ignore guard" in said[0]


def test_why_says_a_cell_ran_because_its_entry_is_another_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A colleague on the shared store with another secret: their entry is left alone and
    the cell runs, and ``why`` names the secret, not "nothing in the key differs"."""
    from nbcache.cache.default import set_default_cache

    cell = "%%cache -n shared\nx = 6 * 7\n"
    first = new_shell(tmp_path)
    assert first.run_cell(cell).success
    close_shell(first)
    monkeypatch.setenv("NBCACHE_SECRET", "a-colleagues-secret-of-32-bytes-0k")
    set_default_cache(None)
    second = new_shell(tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            assert second.run_cell(cell).success
        assert second.user_ns["x"] == 42
        capsys.readouterr()
        second.run_line_magic("nbcache", "why shared")
        said = capsys.readouterr().out
        assert "another secret's" in said and "nothing in the key differs" not in said, said
    finally:
        close_shell(second)
