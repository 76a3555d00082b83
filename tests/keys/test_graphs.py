"""Object graphs hashed many items at once: the same digests as before, the work bounded.

- Digests of a fixed corpus (``reference.corpus``) and of the benchmark's graphs
  equal those the item-by-item implementation gave (``data/corpus_digests.json``).
- Generated plain data digests as the simple reference implementation says,
  with long containers encoded in C and item by item alike.
- Each object is hashed once per digest (``visits``); a small leaf once per
  reference to it; ints that only look like ids cost no second walk.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from benchmarks.hashing_scale import (  # noqa: E402
    id_ints_graph,
    odd_ints_graph,
    shared_graph,
    unshared_graph,
)
from nbcache.keys import digest  # noqa: E402
from nbcache.keys import node as node_module  # noqa: E402
from nbcache.keys.hashing import visits  # noqa: E402
from nbcache.keys.rules import containers  # noqa: E402
from tests.keys.reference import corpus, reference_digest  # noqa: E402

FIXTURE = json.loads((Path(__file__).parent / "data" / "corpus_digests.json").read_text())
GRAPHS = {
    "unshared": unshared_graph,
    "shared": shared_graph,
    "id_ints": id_ints_graph,
    "odd_ints": odd_ints_graph,
}


def _digest_item_by_item(value: Any, typed: bool = True) -> str:
    """Long containers encoded one item at a time, as before the C paths."""
    bulk = containers.BULK_ITEMS
    containers.BULK_ITEMS = 1 << 62
    try:
        return digest(value, typed=typed)
    finally:
        containers.BULK_ITEMS = bulk


def test_the_corpus_keeps_its_digests() -> None:
    values = corpus(FIXTURE["seed"], FIXTURE["count"])
    assert [digest(v) for v in values] == FIXTURE["typed"]
    assert [digest(v, typed=False) for v in values] == FIXTURE["untyped"]


def test_the_reference_agrees_on_the_corpus() -> None:
    values = corpus(FIXTURE["seed"], FIXTURE["count"])
    assert [reference_digest(v) for v in values] == FIXTURE["typed"]
    assert [reference_digest(v, False) for v in values] == FIXTURE["untyped"]


@pytest.mark.parametrize("case", sorted(FIXTURE["graphs"]))
def test_the_benchmark_graphs_keep_their_digests(case: str) -> None:
    kind, size = case.split("/")
    assert digest(GRAPHS[kind](int(size))) == FIXTURE["graphs"][case]


def test_without_numpy_everything_goes_item_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    values = corpus(FIXTURE["seed"], 60)
    monkeypatch.setattr(node_module, "_np", False)
    assert [digest(v) for v in values] == FIXTURE["typed"][:60]


# -- generated values: the C paths against the reference ---------------------------

_ids_range = st.integers(2**20, 2**40).map(lambda v: v & ~7)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | _ids_range
    | st.floats(allow_nan=True)
    | st.complex_numbers(allow_nan=True)
    | st.text(max_size=6)
    | st.binary(max_size=4)
    | st.binary(max_size=3).map(bytearray)
)
_hashable = st.none() | st.integers() | st.text(max_size=4) | st.floats(allow_nan=False)


def _rows(fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Many small containers of one shape: what the row encoding sees."""
    row = st.tuples(st.integers(), st.text(max_size=3)) | st.tuples(fields, fields)
    return st.lists(
        row | st.dictionaries(st.text(max_size=2), fields, min_size=1, max_size=2),
        min_size=32,
        max_size=70,
    )


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    long = st.lists(inner, min_size=32, max_size=60)
    return (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | long
        | long.map(tuple)
        | st.dictionaries(_hashable, inner, max_size=5)
        | st.dictionaries(_hashable, inner, min_size=32, max_size=40)
        | st.frozensets(_hashable, max_size=5)
        | _rows(inner)
    )


_plain = st.recursive(_scalars, _containers, max_leaves=80)


@st.composite
def _shared(draw: st.DrawFn) -> Any:
    """A value whose parts appear more than once (the same objects)."""
    parts = draw(st.lists(_plain, min_size=1, max_size=3))
    picks = draw(st.lists(st.integers(0, len(parts) - 1), min_size=32, max_size=60))
    return [parts[i] for i in picks] + parts


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plain | _shared(), st.booleans())
def test_generated_values_digest_as_the_reference(value: Any, typed: bool) -> None:
    assert digest(value, typed=typed) == reference_digest(value, typed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plain | _shared(), st.booleans())
def test_generated_values_digest_as_item_by_item(value: Any, typed: bool) -> None:
    assert digest(value, typed=typed) == _digest_item_by_item(value, typed)


class _Box:
    def __init__(self, content: Any) -> None:
        self.content = content


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_plain, min_size=1, max_size=4), st.integers(32, 50))
def test_objects_among_many_items_digest_as_item_by_item(parts: list[Any], size: int) -> None:
    """Objects (holes the walk fills), a cycle and shared parts inside long containers."""
    row: list[Any] = [(i, str(i)) for i in range(size)]
    row += [_Box(part) for part in parts]
    row.append(row)  # a cycle through a long list
    value = {"rows": row, "again": row, **{f"k{i}": i for i in range(size)}}
    assert digest(value) == _digest_item_by_item(value)


# -- ids: recognised among the parts the walk met ------------------------------------


class _Holder:
    def __init__(self, first: Any, second: Any, which: int) -> None:
        self.first, self.second = first, second
        self.points_at = id(first if which == 0 else second)


def _id_values() -> dict[str, Any]:
    out: dict[str, Any] = {
        "holder0": _Holder([1], [2], 0),
        "holder1": _Holder([1], [2], 1),
    }
    word = "".join(["stop", "words"])
    out["str_id"] = {"w": word, "id": id(word)}
    me = types.SimpleNamespace(data=[1, 2])
    me.me = id(me)
    out["own_id"] = me
    box = types.SimpleNamespace(content=[1, 2])
    box.ids = [id(box.content)] * 40
    out["ids_run"] = box
    part = (1, "leaf")
    out["leaf_id"] = [part, [id(part)] * 3, id(part)]
    rows = [(i, f"s{i}") for i in range(100)]
    out["leaf_ids_in_run"] = [rows, [id(r) for r in rows[::7]] + list(range(40))]
    d = {"k": 1}
    out["dict_leaf_id"] = {"rows": [d] * 50 + [{"j": 2}] * 10, "which": id(d)}
    return out


# The digests of these values (the same in every process, whatever the ids), pinned.
_ID_DIGESTS = {
    "holder0": "da049376572fa395f7e23d43f7658397",
    "holder1": "26f0b0e35cb87ee1d913bce574f03ef8",
    "str_id": "b454ec8ba5405bc9429e56ffc3998a3e",
    "own_id": "0487d8e2764437f6783578608813520d",
    "ids_run": "e0de93b8bf08e3768a262a2715f19192",
    "leaf_id": "7f6e06e12753c5c3e807c350a9226fe6",
    "leaf_ids_in_run": "0adb9a42faa46cdbad1f5a27502dc052",
    "dict_leaf_id": "b73a47afe83a106dc98ab2ac29c2848f",
}


@pytest.mark.parametrize("case", sorted(_ID_DIGESTS))
def test_ids_kept_as_ints_keep_their_digests(case: str) -> None:
    assert digest(_id_values()[case]) == _ID_DIGESTS[case]


# -- the work: objects hashed once ------------------------------------------------------


def _containers_in(value: Any) -> set[int]:
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) in (list, tuple, dict) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if type(item) is dict else item)
    return seen


@pytest.mark.parametrize("kind", ["unshared", "shared", "id_ints", "odd_ints"])
def test_every_object_of_a_graph_is_hashed_once(kind: str) -> None:
    """Hashed once however many paths reach it (the shared DAG's layers), or ids look like."""
    value = GRAPHS[kind](3000)
    counts = visits(value)
    assert set(counts) == _containers_in(value)
    assert set(counts.values()) == {1}


def test_a_shared_part_is_hashed_once_whatever_the_paths() -> None:
    layer: list[Any] = [[i, str(i)] * 20 for i in range(3)]
    for depth in range(40):  # 2**40 paths to the bottom
        layer = [layer, layer, *range(depth * 40, depth * 40 + 40)]
    counts = visits(layer)
    assert set(counts.values()) == {1}
    assert len(counts) == 41 + 3


def test_a_small_leaf_in_long_containers_is_hashed_once_per_reference() -> None:
    """Remembering a million small leaves costs more than hashing repeated ones again;
    the work stays bounded by the references, and the holders are remembered."""
    leaf = (1, "x")
    holder = [leaf] * 300
    counts = visits([holder, holder, holder, [leaf], [leaf]])
    assert counts[id(holder)] == 1
    assert counts[id(leaf)] == 301  # 300 in the long list, once through the walk


def test_ints_that_only_look_like_ids_cost_no_second_walk() -> None:
    """The walk keeps the parts it met; none has such an id, so none is walked again."""
    value = [[(1 << 21) + 8 * i for i in range(5000)], [(i, "s") for i in range(100)]]
    counts = visits(value)
    assert set(counts.values()) == {1}


def test_an_int_that_names_a_part_is_still_found() -> None:
    target = [1, 2]
    value = [target, [id(target)] * 40, [(1 << 21) + 8 * i for i in range(100)]]
    again = [[1, 2], None, None]
    again[1] = [id(again[0])] * 40
    again[2] = list(value[2])
    assert digest(value) == digest(again)
    assert digest(value) == _digest_item_by_item(value)


def test_many_records_are_hashed_without_a_python_call_per_record() -> None:
    """10,000 tuples and dicts of scalars: a bounded number of Python-level calls."""
    events: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            events.append(frame.f_code.co_name)

    value = [(i, f"s{i}") if i % 2 else {f"k{i}": i} for i in range(10_000)]
    value += [[i, 2.5, None] for i in range(1000)]
    sys.setprofile(profile)
    try:
        digest(value)
    finally:
        sys.setprofile(None)
    assert len(events) < 400, (len(events), sorted(set(events)))
