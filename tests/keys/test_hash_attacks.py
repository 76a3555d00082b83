"""Values a user would call different must not share a digest (a stale hit): small
leaves written in place, their neighbours, their bounds, and parts met again in cycles."""

from __future__ import annotations

import enum
import itertools
import struct
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbcache.keys.hashing import digest, visits
from nbcache.keys.node import INLINE_BYTES, INLINE_ITEMS


class _List(list):  # type: ignore[type-arg]
    pass


class _Int(int):
    pass


class _Enum(enum.IntEnum):
    ONE = 1


_OTHER_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 2], (1, 2)),
        ([1, [2]], [[1], 2]),
        ([[1, 2]], [[1], [2]]),
        ([[1], [2]], [[1, 2], []]),
        ([True], [1]),
        ([1], [1.0]),
        ([-0.0], [0.0]),
        (["a"], [b"a"]),
        ([""], [b""]),
        ([b"a"], [bytearray(b"a")]),
        ([{"a": 1, "b": 2}], [{"b": 2, "a": 1}]),
        ([{1: "x"}], [{True: "x"}]),
        ([{1: 2}], [[1, 2]]),
        ([{1: 2}], [[(1, 2)]]),
        ([[1, 2]], [_List([1, 2])]),
        ([[1]], [[_Enum.ONE]]),
        ([[1]], [[_Int(1)]]),
        ([[1]], [[np.int64(1)]]),
        ([[1.0]], [[np.float64(1.0)]]),
        ([[2**64]], [[2**64 + 1]]),
        ([[2**63]], [[-(2**63)]]),
        ([["\ud800"]], [["\udc00"]]),
        ([["\ud83d\ude00"]], [["\U0001f600"]]),
        ([[None]], [[[]]]),
        ([()], [{}]),
        ([["a", "b"]], [["ab"]]),
        ([[complex(-0.0, 0)]], [[complex(0.0, 0)]]),
    ],
)
def test_values_a_cell_tells_apart_never_share_a_digest(a: Any, b: Any) -> None:
    assert digest(a) != digest(b)
    assert digest([a, 0]) != digest([b, 0]) and digest({"k": a}) != digest({"k": b})


def test_what_the_project_chose_to_equate_is_equal() -> None:
    """Sharing is not content (docs/decisions.md), and every NaN is one NaN."""
    shared = [1]
    assert digest([shared, shared]) == digest([[1], [1]])
    assert digest([float("nan")]) == digest([_OTHER_NAN])


@pytest.mark.parametrize("count", [INLINE_ITEMS - 2, INLINE_ITEMS - 1, INLINE_ITEMS, 33])
def test_either_side_of_the_item_bound_a_last_item_counts(count: int) -> None:
    items = list(range(count))
    edited = [*items[:-1], -1]
    assert digest([items, 0]) != digest([edited, 0])
    assert digest([items]) != digest([tuple(items)])


@pytest.mark.parametrize("size", [INLINE_BYTES - 40, INLINE_BYTES - 20, INLINE_BYTES, 4200])
def test_either_side_of_the_byte_bound_a_last_byte_counts(size: int) -> None:
    text, edited = "x" * size, "x" * (size - 1) + "y"
    assert digest([[text], [text]]) != digest([[text], [edited]])
    assert digest([[text]]) != digest([(text,)])


def test_a_part_met_again_in_a_cycle_is_not_taken_for_another() -> None:
    """p = [q], q = [p]; in [q, p] the second p holds q, a list of one item. In
    [q, p2] with p2 = [the whole], p2 holds a list of two: a cell tells them apart."""
    p: list[Any] = []
    q = [p]
    p.append(q)
    first = [q, p]
    p2: list[Any] = []
    second = [q, p2]
    p2.append(second)
    assert len(first[1][0]) == 1 and len(second[1][0]) == 2
    assert digest(first) != digest(second)


def test_a_part_met_again_in_a_cycle_through_objects() -> None:
    """The same through objects that point at each other (a parent and its child)."""

    class Node:
        def __init__(self) -> None:
            self.next: Any = None

    p, q, p2 = Node(), Node(), Node()
    p.next, q.next = q, p
    first, second = [q, p], [q, p2]
    p2.next = second
    assert digest(first) != digest(second)


class _Tree:
    def __init__(self, parent: Any) -> None:
        self.parent = parent
        self.children: list[Any] = []


def _linked_tree(count: int) -> list[Any]:
    """A tree whose nodes point at their parent, each at the next in breadth-first
    order and back, and a flat list of them all: cycles everywhere, parts met again."""
    root = _Tree(None)
    nodes, frontier = [root], [root]
    while len(nodes) < count:
        parent = frontier.pop(0)
        for _ in range(3):
            child = _Tree(parent)
            parent.children.append(child)
            nodes.append(child)
            frontier.append(child)
    for a, b in itertools.pairwise(nodes):
        a.after, b.before = b, a  # type: ignore[attr-defined]
    return [root, nodes]


@pytest.mark.parametrize("count", [100, 1000])
def test_parts_met_again_in_cycles_are_hashed_once(count: int) -> None:
    """A part whose digest points above it is not walked again where it is met again:
    the work stays linear in the objects (each node and its attribute dict)."""
    counts = visits(_linked_tree(count))
    assert max(counts.values()) == 1
    assert sum(counts.values()) <= 2 * count + 10


def test_a_long_list_of_linked_nodes_pointing_at_their_graph_is_hashed_once() -> None:
    """Encoded many items at once, the list asks for its nodes by their place in it: a
    node met again there is named by its place, not walked again with all after it."""

    class Linked:
        pass

    graph: dict[str, Any] = {}
    nodes = [Linked() for _ in range(600)]
    for node in nodes:
        node.graph = graph  # type: ignore[attr-defined]
    for a, b in itertools.pairwise(nodes):
        a.next = b  # type: ignore[attr-defined]
    graph["nodes"] = nodes
    counts = visits(graph)
    assert max(counts.values()) == 1 and sum(counts.values()) <= len(nodes) + 10


def test_a_part_met_again_finds_its_place_in_about_one_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Objects each pointing at two others (one big cycle, walked deep): a part met
    again finds its place from the last one found, not by a climb to the top each
    time. Counted by the hashes taken (they were 2.7 million for 4000 objects)."""
    import xxhash

    from nbcache.keys import node

    class Linked:
        def __init__(self) -> None:
            self.out: list[Any] = []

    count = 4000
    objects = [Linked() for _ in range(count)]
    for i, obj in enumerate(objects):
        obj.out = [objects[(i * 7 + 1) % count], objects[(i * 13 + 5) % count]]
    calls = 0

    def counted(data: Any) -> bytes:
        nonlocal calls
        calls += 1
        return xxhash.xxh3_128_digest(data)

    fake = types.SimpleNamespace(xxh3_128=xxhash.xxh3_128, xxh3_128_digest=counted)
    monkeypatch.setattr(node, "xxhash", fake)
    digest(objects)
    assert calls <= 20 * count


def test_every_object_in_a_dense_cycle_is_hashed_once() -> None:
    class Peer:
        def __init__(self) -> None:
            self.peers: list[Any] = []

    peers = [Peer() for _ in range(12)]
    for peer in peers:
        peer.peers = [p for p in peers if p is not peer]
    assert max(visits(peers).values()) == 1


def test_a_list_that_holds_itself_and_its_unrolling_agree_in_every_process() -> None:
    loop: list[Any] = [1, 2]
    loop.append(loop)
    again: list[Any] = [1, 2]
    again.append(again)
    assert digest(loop) == digest(again)
    assert digest(loop) != digest([1, 2, [1, 2]])


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_leaves = st.one_of(
    st.lists(_scalars, max_size=4),
    st.lists(_scalars, max_size=4).map(tuple),
    st.dictionaries(st.one_of(st.integers(), st.text(max_size=4)), _scalars, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_scalars, _leaves), max_size=5),
    st.lists(st.one_of(_scalars, _leaves), max_size=5),
)
def test_lists_of_leaves_and_scalars_share_a_digest_only_when_equal_in_kind(
    a: list[Any], b: list[Any]
) -> None:
    """Equal digests only for values equal item by item with the same types throughout
    (dict order included): what a cell could not tell apart."""

    def shape(value: Any) -> Any:
        if type(value) in (list, tuple):
            return (type(value).__name__, [shape(v) for v in value])
        if type(value) is dict:
            return ("dict", [(shape(k), shape(v)) for k, v in value.items()])
        if type(value) is float:
            return ("float", struct.pack("<d", value))
        return (type(value).__name__, value)

    if digest(a) == digest(b):
        assert shape(a) == shape(b)
