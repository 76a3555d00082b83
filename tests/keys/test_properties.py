"""Properties of digests over generated values (Hypothesis).

- Two values a cell could tell apart never share a digest.  "Could tell
  apart" is :func:`observe`: type, order where iteration shows it, and exact
  bits (NaN aside: every NaN is one value to a key).
- Equal values built differently (a deep copy, a pickle round trip) share one.
- Digests are the same in a fresh process under another PYTHONHASHSEED.
"""

from __future__ import annotations

import collections
import copy
import math
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from nbcache.keys import digest  # noqa: E402
from nbcache.keys import node as node_module  # noqa: E402
from nbcache.keys.rules import containers  # noqa: E402

Point = collections.namedtuple("Point", "x y")


class MyList(list):  # type: ignore[type-arg]
    """A list subclass: its items live outside its ``__dict__``."""


class MyDict(dict):  # type: ignore[type-arg]
    """A dict subclass, with an attribute of its own."""


class MySet(set):  # type: ignore[type-arg]
    """A set subclass: order-free like a set."""


class Box:
    """A plain object: its class and ``__dict__``."""

    def __init__(self, content: Any) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return type(other) is Box and other.content == self.content

    __hash__ = None  # type: ignore[assignment]


def _my_dict(items: dict[Any, Any], tag: str) -> MyDict:
    d = MyDict(items)
    d.tag = tag  # type: ignore[attr-defined]
    return d


_DTYPES = st.sampled_from(
    ["i1", "<i4", ">i4", "<i8", "u2", "<f4", "<f8", "?", "<c16", "<M8[s]", "<M8[ns]", "<m8[ms]"]
)
_arrays = _DTYPES.flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(max_dims=3, max_side=4))
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.complex_numbers(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_hashables = st.recursive(
    _scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v))),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.text(max_size=4) | st.integers(-5, 5)
    return (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4).map(collections.OrderedDict)
        | st.dictionaries(keys, inner, max_size=3).map(lambda d: collections.defaultdict(list, d))
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3).map(collections.Counter)
        | st.sets(_hashables, max_size=4)
        | st.frozensets(_hashables, max_size=4)
        | st.tuples(inner, inner).map(lambda t: Point(*t))
        | st.lists(inner, max_size=3).map(MyList)
        | st.tuples(st.dictionaries(keys, inner, max_size=3), st.text(max_size=2)).map(
            lambda t: _my_dict(*t)
        )
        | st.sets(_hashables, max_size=3).map(MySet)
        | inner.map(Box)
    )


values = st.recursive(_scalars | _arrays, _containers, max_leaves=12)


def _float_bits(value: float) -> bytes:
    return b"nan" if math.isnan(value) else struct.pack("<d", value)


def observe(value: Any) -> Any:
    """Everything a cell can see of a generated value, as plain comparable data."""
    kind = type(value)
    if kind is float:
        return (kind.__name__, _float_bits(value))
    if kind is complex:
        return (kind.__name__, _float_bits(value.real), _float_bits(value.imag))
    if isinstance(value, np.ndarray):
        data = value.tobytes() if value.dtype.kind not in "fc" else _array_bits(value)
        native = value.dtype.newbyteorder("=")  # numpy's pickle drops the byte order
        data = value.astype(native).tobytes() if value.dtype.kind not in "fc" else data
        return ("ndarray", native.str, value.shape, data)
    if isinstance(value, (set, frozenset)):
        return (kind.__name__, sorted(repr(observe(v)) for v in value))
    if isinstance(value, dict):
        factory = getattr(value, "default_factory", None)
        extra = vars(value).get("tag") if kind is MyDict else factory
        return (kind.__name__, repr(extra), [(observe(k), observe(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (kind.__name__, [observe(v) for v in value])
    if kind is Box:
        return (kind.__name__, observe(value.content))
    return (kind.__name__, value)


def _array_bits(array: np.ndarray) -> Any:
    """Float bits with every NaN one NaN (a key does not see NaN payloads in scalars)."""
    flat = array.ravel()
    return [observe(complex(v) if array.dtype.kind == "c" else float(v)) for v in flat]


_MUTATIONS = [
    lambda v: [v],
    lambda v: (v,),
    lambda v: {"k": v},
    lambda v: list(reversed(v)) if isinstance(v, list) else v,
    lambda v: dict(reversed(list(v.items()))) if type(v) is dict else v,
    lambda v: v.astype("<f8") if isinstance(v, np.ndarray) else v,
    lambda v: v.reshape(-1) if isinstance(v, np.ndarray) else v,
    lambda v: float(v) if type(v) is int else v,
    lambda v: int(v) if type(v) is bool else v,
    lambda v: dict(v) if isinstance(v, dict) else v,
    lambda v: list(v) if isinstance(v, tuple) else v,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.sampled_from(_MUTATIONS) | st.just(None), values)
def test_values_a_cell_tells_apart_differ(a: Any, mutate: Any, other: Any) -> None:
    """Two values that differ in anything observable never share a digest."""
    b = other if mutate is None else mutate(a)
    assume(repr(observe(a)) != repr(observe(b)))
    assert digest(a) != digest(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_equal_values_built_differently_agree(value: Any) -> None:
    """A deep copy and a pickle round trip hash as the original does."""
    expected = digest(value)
    assert digest(copy.deepcopy(value)) == expected
    assert digest(pickle.loads(pickle.dumps(value))) == expected


_IN_A_NEW_PROCESS = """
import pickle, sys
sys.path.insert(0, {root!r})  # the namedtuple Point pickles by reference to this module
from nbcache.keys import digest
print(" ".join(digest(v) for v in pickle.load(open({path!r}, "rb"))))
"""


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, min_size=5, max_size=20))
def test_same_digests_in_a_new_process_and_hash_seed(tmp_path_factory: Any, batch: Any) -> None:
    """Digests do not depend on the process: string hash seeds, ids, set order."""
    path = Path(tmp_path_factory.mktemp("batch")) / "values.pkl"
    path.write_bytes(pickle.dumps(batch))
    code = _IN_A_NEW_PROCESS.format(root=str(Path(__file__).parents[2]), path=str(path))
    expected = " ".join(digest(v) for v in batch)
    for seed in ("0", "7"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert done.stdout.strip() == expected


def _column(name: str, kind: str) -> Any:
    from hypothesis.extra import pandas as hpd

    if kind == "object":  # Python strings, None among them
        return hpd.column(name, elements=st.none() | st.text(max_size=3), dtype=object)
    return hpd.column(name, dtype=kind)


def _frames() -> st.SearchStrategy[Any]:
    """Frames of two columns of drawn dtypes, the second maybe categorical."""
    from hypothesis.extra import pandas as hpd

    kinds = st.sampled_from(["int64", "float64", "bool", "datetime64[ns]", "object"])
    return st.tuples(kinds, kinds, st.integers(0, 6), st.booleans()).flatmap(
        lambda spec: hpd.data_frames(
            [_column("a", spec[0]), _column("b", spec[1])],
            index=hpd.range_indexes(min_size=spec[2], max_size=spec[2]),
        ).map(lambda frame: frame.astype({"b": "category"}) if spec[3] else frame)
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_frames_built_differently_agree(frame: Any) -> None:
    """A frame, its copy and its pickle round trip share a digest; a renamed index does not."""
    expected = digest(frame)
    assert digest(frame.copy()) == expected
    assert digest(pickle.loads(pickle.dumps(frame))) == expected
    assert digest(frame.rename_axis("other")) != expected
    assert digest(frame.iloc[::-1]) != expected or len(frame) <= 1


# Long runs of one scalar type: encoded in C (``bulk_atoms``), byte for byte as item
# by item. Ints reach 64-bit bounds, beyond them, and the range where ids fall.
_bulk_ints = st.integers(-(2**63), 2**63 - 1) | st.integers(2**20, 2**48).map(lambda v: v & ~7)
_bulk_items = (
    st.lists(_bulk_ints, min_size=32, max_size=80)
    | st.lists(st.integers(), min_size=32, max_size=80)
    | st.lists(st.floats(allow_nan=True), min_size=32, max_size=80)
    | st.lists(st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf]), min_size=32)
    | st.lists(st.integers(-3, 3) | st.floats(-3, 3) | st.booleans(), min_size=32, max_size=40)
)


def _item_by_item(value: Any, typed: bool) -> str:
    from nbcache.keys.rules import containers

    bulk = containers.BULK_ITEMS
    containers.BULK_ITEMS = 1 << 62
    try:
        return digest(value, typed=typed)
    finally:
        containers.BULK_ITEMS = bulk


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bulk_items, st.booleans(), st.booleans())
def test_runs_of_one_scalar_type_digest_as_item_by_item(
    items: list[Any], as_tuple: bool, typed: bool
) -> None:
    """The C encoding of a long list or tuple of ints or floats changes no digest."""
    value = tuple(items) if as_tuple else items
    assert digest(value, typed=typed) == _item_by_item(value, typed)
    assert digest([value, "x"], typed=typed) == _item_by_item([value, "x"], typed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bulk_items, st.integers(0, 31), st.sampled_from(_MUTATIONS[7:9]) | st.just(None))
def test_runs_a_cell_tells_apart_differ(items: list[Any], at: int, mutate: Any) -> None:
    """One item of a long run changed (its type, its sign, its bits): another digest."""
    changed = list(items)
    item = changed[at]
    if mutate is not None:
        changed[at] = mutate(item)
    elif type(item) is float:
        changed[at] = -item if item == item else 0.0
    else:
        changed[at] = item ^ 8 if type(item) is int else not item
    assume(repr(observe(items)) != repr(observe(changed)))
    assert digest(items) != digest(changed)


def test_a_long_run_of_ones_is_not_a_run_of_true_or_one_point_oh() -> None:
    assert len({digest([1] * 40), digest([1.0] * 40), digest([True] * 40)}) == 3
    assert digest([0.0] * 40) != digest([-0.0] * 40)
    assert len({digest([1] * 40, typed=False), digest([1.0] * 40, typed=False)}) == 1


def test_an_id_in_a_long_run_of_ints_still_names_its_part() -> None:
    """Ids kept in a long list of ints resolve to the part they name, as item by item."""

    def make() -> Box:
        box = Box([1, 2])
        box.ids = [id(box.content)] * 40  # type: ignore[attr-defined]
        return box

    assert digest(make()) == digest(make())
    assert digest(make()) == _item_by_item(make(), True)


def test_a_long_list_of_numbers_is_encoded_without_a_python_call_per_item() -> None:
    """10,000 ints (ids' range included) or floats: a bounded number of Python-level
    calls, not one or more per item."""
    events: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            events.append(frame.f_code.co_name)

    for value in (
        [(1 << 30) + 8 * i for i in range(10_000)],
        [float(i) / 3 for i in range(10_000)],
        tuple(range(10_000)),
    ):
        events.clear()
        sys.setprofile(profile)
        try:
            digest(value)
        finally:
            sys.setprofile(None)
        assert len(events) < 200, (len(events), sorted(set(events)))


# -- small leaves written in place: the stream stays unambiguous ------------------------

_leaf_scalars = _scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v)))
_small_leaves = (
    st.lists(_leaf_scalars, max_size=4)
    | st.lists(_leaf_scalars, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=3) | st.integers(-3, 3), _leaf_scalars, max_size=3)
)
_parents = st.lists(_leaf_scalars | _small_leaves, max_size=5)


def _root_stream(value: Any, batch: bool) -> bytes:
    """The bytes the root's digest is made of (before hashing), long lists in C or not.

    The root holds scalars and small leaves only, so no digest is among its bytes.
    """
    streams: list[bytes] = []
    finish = node_module.Node.finish

    def recording(self: Any) -> bytes:
        streams.append(bytes(self._buf))
        return finish(self)

    bulk = containers.BULK_ITEMS
    node_module.Node.finish = recording  # type: ignore[method-assign]
    containers.BULK_ITEMS = bulk if batch else 1 << 62
    try:
        digest(value)
    finally:
        node_module.Node.finish = finish  # type: ignore[method-assign]
        containers.BULK_ITEMS = bulk
    return streams[-1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_parents, _parents, st.booleans())
def test_a_small_leaf_in_place_never_reads_as_other_items(a: Any, b: Any, long: bool) -> None:
    """Two lists a cell tells apart never write the same bytes, hash aside: each small
    leaf written in place is framed (its tag, its count, tagged scalars), so it can
    never be read as scalars, other leaves or a part's digest."""
    # A leaf at the end, so the root holds a part (a root that is a leaf is hashed
    # as a whole); long, encoded many items at once (``keys/batch.py``) or not.
    a, b = (a * 130 if long else a) + [()], (b * 130 if long else b) + [()]
    assume(repr(observe(a)) != repr(observe(b)))
    assert _root_stream(a, batch=long) != _root_stream(b, batch=long)
    if long:
        assert _root_stream(a, batch=True) == _root_stream(a, batch=False)


def test_small_leaves_cost_no_hash_call_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of 3,000 records hashes its bytes in a few XXH3 calls, not one per record;
    a set's leaves are still hashed one by one (it sorts their digests)."""
    import xxhash

    calls: list[int] = []
    real = xxhash.xxh3_128_digest

    def counted(data: Any) -> bytes:
        calls.append(1)
        return real(data)

    monkeypatch.setattr(node_module.xxhash, "xxh3_128_digest", counted)
    records = [(1000 + i, f"s{i}") if i % 2 else {f"k{i}": i} for i in range(3000)]
    for value in (records, records[:200]):  # in C, and item by item
        calls.clear()
        digest(value)
        assert len(calls) <= 2, len(calls)
    calls.clear()
    digest({(i, "t") for i in range(100)})
    assert len(calls) >= 100
