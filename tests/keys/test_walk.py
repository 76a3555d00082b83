"""The walk: linear in the object graph, no recursion limit, a budget, one error type."""

from __future__ import annotations

import io
import threading
import time
from typing import Any
from unittest import mock

import numpy as np
import pytest

from nbcache import KeyPicklingError
from nbcache.keys import HashBudgetError, LiveHandleError, digest


def _dag(depth: int) -> list[Any]:
    """A list holding the layer below twice, ``depth`` times: 2**depth paths, depth+1 lists."""
    layer: list[Any] = [0]
    for level in range(depth):
        layer = [layer, layer, level]
    return layer


def test_shared_parts_are_hashed_once() -> None:
    """A DAG reachable by 2**60 paths hashes at once: each object is visited once."""
    started = time.perf_counter()
    digest(_dag(60))
    assert time.perf_counter() - started < 1.0


def test_sharing_does_not_change_the_digest() -> None:
    """A shared part and an equal copy of it give one digest: keys are about content."""
    part = [1, {"a": np.arange(3)}]
    assert digest([part, part]) == digest([part, [1, {"a": np.arange(3)}]])


def test_deep_nesting_has_no_recursion_limit() -> None:
    """A list nested 3000 deep and a 100 000-node linked list hash without RecursionError."""
    nested: list[Any] = []
    for _ in range(3000):
        nested = [nested]
    assert digest(nested) != digest([])

    class Node:
        def __init__(self, value: int, next_: Node | None) -> None:
            self.value = value
            self.next = next_

    head: Node | None = None
    for i in range(100_000):
        head = Node(i, head)
    other: Node | None = None
    for i in range(100_000):
        other = Node(i if i else -1, other)
    assert digest(head) != digest(other)


def test_cycles_of_objects() -> None:
    """Doubly linked objects hash, the same when built the same way, differently otherwise."""

    class Cell:
        def __init__(self, v: int) -> None:
            self.v = v
            self.peer: Cell | None = None

    def pair(v: int) -> Cell:
        a, b = Cell(v), Cell(2)
        a.peer, b.peer = b, a
        return a

    assert digest(pair(1)) == digest(pair(1))
    assert digest(pair(1)) != digest(pair(3))


class _Anything:
    """A callable that answers every attribute name (``__wrapped__`` too), as RPC stubs do."""

    def __init__(self) -> None:
        self.x = 1

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self) -> None:
        return None


class _OddReduce:
    def __reduce_ex__(self, protocol: Any) -> Any:
        return 42


class _RaisingReduce:
    def __reduce_ex__(self, protocol: Any) -> Any:
        raise RuntimeError("no")


class _BadGetattr:
    def __getattr__(self, name: str) -> Any:
        raise ZeroDivisionError(name)


HOSTILE = {
    "getattr answers everything": _Anything(),
    "getattr raises": _BadGetattr(),
    "mock with ndarray spec": mock.Mock(spec=np.ndarray),
    "magic mock": mock.MagicMock(),
    "reduce returns an int": _OddReduce(),
    "reduce raises": _RaisingReduce(),
    "weakref": __import__("weakref").ref(_OddReduce),
    "property": property(lambda self: 1),
    "huge int": 10**5000,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_only_key_pickling_errors(case: str) -> None:
    """Whatever a value does, digest returns a digest or raises KeyPicklingError naming its type."""
    value = HOSTILE[case]
    try:
        assert len(digest(value, name="v")) == 32
    except KeyPicklingError as exc:
        assert "`v" in str(exc) and type(value).__name__ in str(exc)


def test_odd_reduce_is_a_clear_error() -> None:
    """A __reduce_ex__ that returns something odd is named, chained, and a KeyPicklingError."""
    with pytest.raises(KeyPicklingError, match=r"`v\[0\]` \(.*_OddReduce\).*returned int"):
        digest([_OddReduce()], name="v")
    with pytest.raises(KeyPicklingError, match="RuntimeError: no") as info:
        digest(_RaisingReduce())
    assert info.value.__cause__ is not None


def test_mock_with_an_ndarray_spec_is_not_an_array() -> None:
    """isinstance(Mock(spec=np.ndarray), np.ndarray) is True; the rules go by type() instead."""
    value = mock.Mock(spec=np.ndarray)
    try:
        digest(value)
    except KeyPicklingError:
        pass


@pytest.mark.parametrize("unit", ["ns", "s", "D", "M"])
def test_datetime_and_timedelta_arrays(unit: str) -> None:
    """datetime64 and timedelta64 arrays hash by buffer; the unit is part of the key."""
    a = np.arange(6).astype(f"datetime64[{unit}]")
    assert digest(a) == digest(a.copy())
    assert digest(a) != digest(np.arange(6).astype("datetime64[h]"))
    t = np.arange(6).astype(f"timedelta64[{unit}]")
    assert digest(t) != digest(a)
    assert digest(t[::2]) == digest(np.ascontiguousarray(t[::2]))
    assert digest(np.datetime64(1, unit)) != digest(np.datetime64(1, "h"))


def test_object_budget() -> None:
    """Past the object budget, HashBudgetError (a KeyPicklingError) names the variable."""
    with pytest.raises(HashBudgetError, match=r"`big`.*more than 1,000 objects"):
        digest([[i] for i in range(5000)], name="big", max_objects=1000)


def test_time_budget() -> None:
    """Past the time budget, HashBudgetError instead of a cell that seems to hang."""
    with pytest.raises(HashBudgetError, match="longer than"):
        digest([[i] for i in range(200_000)], max_seconds=0.0)
    with pytest.raises(HashBudgetError):
        digest(np.zeros(1 << 24), max_seconds=0.0)


def test_figures_are_live_handles() -> None:
    """A matplotlib Figure or Axes is refused at once, not walked for minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(np.arange(1000))
    started = time.perf_counter()
    for value in (fig, ax, {"fig": fig}):
        with pytest.raises(LiveHandleError, match="live handle"):
            digest(value, name="fig")
    assert time.perf_counter() - started < 0.5
    plt.close(fig)


def _gen() -> Any:
    yield 1


LIVE = {
    "generator": _gen,
    "lock": threading.Lock,
    "rlock": threading.RLock,
    "event": threading.Event,
    "open file": lambda: open(__file__),  # noqa: SIM115 - the handle is the value under test
}


@pytest.mark.parametrize("case", sorted(LIVE))
def test_live_handles(case: str) -> None:
    """Generators, locks, events and open files raise LiveHandleError wherever they sit."""
    handle = LIVE[case]()
    try:
        with pytest.raises(LiveHandleError):
            digest({"x": handle})
    finally:
        if isinstance(handle, io.IOBase):
            handle.close()


def test_in_memory_buffers_hash_by_content() -> None:
    """BytesIO and StringIO are content, not handles."""
    assert digest(io.BytesIO(b"ab")) != digest(io.BytesIO(b"ac"))
    assert digest(io.StringIO("ab")) == digest(io.StringIO("ab"))


def test_linear_in_graph_size() -> None:
    """Ten times the objects costs about ten times the time, not a hundred."""

    def timed(n: int) -> float:
        value = [(i, {"k": [i]}) for i in range(n)]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            digest(value)
            best = min(best, time.perf_counter() - started)
        return best / n

    small, big = timed(5_000), timed(50_000)
    assert big < small * 4


def test_is_code_never_runs_getattr() -> None:
    """is_code (asked of every cell input) does not trip over a raising __getattr__."""
    from nbcache.keys.code import is_code

    class Raising:
        def __getattr__(self, name: str) -> Any:
            raise ZeroDivisionError(name)

        def __call__(self) -> None:
            return None

    assert not is_code(Raising())
