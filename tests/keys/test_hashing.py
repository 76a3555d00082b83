"""Content digests: equal values agree, different values differ, in any process."""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
import warnings
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from nbcache import KeyPicklingError
from nbcache.keys.classes import describe
from nbcache.keys.hashing import digest

from ..notebook_sim import outputs_under_hash_seeds


@dataclasses.dataclass
class Point:
    x: float
    y: list[int]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Plain:
    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b


def _frame(**overrides: Any) -> pd.DataFrame:
    data = {"a": np.arange(5.0), "b": list("vwxyz"), "c": np.arange(5)}
    data.update(overrides)
    return pd.DataFrame(data)


# Each row: two values that must get different digests.
DIFFERENT = {
    "int vs float": (1, 1.0),
    "int vs bool": (1, True),
    "float vs bool": (1.0, True),
    "zero vs negative zero": (0.0, -0.0),
    "nan vs inf": (float("nan"), float("inf")),
    "str vs bytes": ("a", b"a"),
    "list vs tuple": ([1, 2], (1, 2)),
    "list order": ([1, 2], [2, 1]),
    "nested": ({"a": [1, 2]}, {"a": [1, 3]}),
    "dict vs set of keys": ({"a": None}, {"a"}),
    # list(d) shows insertion order, and a cell's result can follow it.
    "dict order": ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    "set contents": ({1, 2}, {1, 3}),
    "dtype, equal bytes": (np.zeros(4, np.int32), np.zeros(2, np.int64)),
    "shape, equal bytes": (np.zeros((2, 3)), np.zeros((3, 2))),
    "array data": (np.arange(10.0), np.arange(10.0) + 1e-12),
    "column order": (_frame(), _frame()[["b", "a", "c"]]),
    "index": (_frame(), _frame().set_axis(list("pqrst"))),
    "column values": (_frame(), _frame(b=list("vwxyZ"))),
    "column dtype": (_frame(), _frame(c=np.arange(5).astype("int32"))),
    "series name": (pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b")),
    "missing vs value": (_frame(b=["v", None, "x", "y", "z"]), _frame(b=list("vwxyz"))),
    "object vs str dtype": (pd.Series(["a"], dtype=object), pd.Series(["a"], dtype="str")),
    "masked missing": (pd.array([1, None], dtype="Int64"), pd.array([1, 0], dtype="Int64")),
    "categorical codes": (pd.Categorical(["a", "b"]), pd.Categorical(["b", "a"])),
    "datetimes": (
        pd.Series(pd.date_range("2026", periods=3)),
        pd.Series(pd.date_range("2027", periods=3)),
    ),
    "time zone": (
        pd.Series(pd.date_range("2026", periods=2, tz="UTC")),
        pd.Series(pd.date_range("2026", periods=2, tz="Europe/Paris")),
    ),
    "multiindex": (
        _frame().set_index(["b", "c"]),
        _frame().set_index(["c", "b"]),
    ),
    "dataclass field": (Point(1.0, [1]), Point(1.0, [2])),
    "enum member": (Color.RED, Color.BLUE),
    "plain object state": (Plain(1, [2]), Plain(1, [3])),
    "arrow strings": (pa.array(["a", "bc"]), pa.array(["ab", "c"])),
    "arrow nulls": (pa.array([1, None]), pa.array([1, 0])),
    "polars values": (pl.DataFrame({"a": [1, 2]}), pl.DataFrame({"a": [1, 3]})),
    "polars names": (pl.DataFrame({"a": [1, 2]}), pl.DataFrame({"b": [1, 2]})),
    "polars series": (pl.Series("s", ["x", "y"]), pl.Series("s", ["x", "z"])),
}


class Tagged(np.ndarray):
    """An ndarray subclass with an attribute its buffer does not show."""

    unit: str = ""


def _tagged(unit: str) -> Tagged:
    a = np.arange(3.0).view(Tagged)
    a.unit = unit
    return a


def _with_attrs(**attrs: Any) -> pd.DataFrame:
    frame = _frame()
    frame.attrs.update(attrs)
    return frame


class Counted(collections.Counter):  # type: ignore[type-arg]
    """A Counter subclass with an attribute of its own, which Counter's reduce leaves out."""


def _counted(label: str) -> Counted:
    c = Counted("aab")
    c.label = label  # type: ignore[attr-defined]
    return c


def _sparse(k: float) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix(np.eye(3) * k)


def _memmap(tmp: str, mode: str) -> Any:
    return np.memmap(tmp, dtype="float64", mode=mode, shape=(4,))


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    _MATRIX = np.matrix([[1, 2]])

# What a cell can tell apart that the keys used to miss.
DIFFERENT.update(
    {
        "OrderedDict order": (
            collections.OrderedDict(a=1, b=2),
            collections.OrderedDict(b=2, a=1),
        ),
        "dict insertion order in state": (Plain({"a": 1, "b": 2}, 0), Plain({"b": 2, "a": 1}, 0)),
        "defaultdict factory": (
            collections.defaultdict(list, a=[1]),
            collections.defaultdict(tuple, a=[1]),
        ),
        "defaultdict vs dict": (collections.defaultdict(list, a=1), {"a": 1}),
        "ChainMap maps": (
            collections.ChainMap({"a": 1}, {"b": 2}),
            collections.ChainMap({"a": 1, "b": 2}),
        ),
        "Counter vs dict": (collections.Counter(a=2), {"a": 2}),
        "Counter subclass attribute": (_counted("x"), _counted("y")),
        "masked array mask": (
            np.ma.array([1, 2, 3], mask=[0, 1, 0]),
            np.ma.array([1, 2, 3], mask=[0, 0, 1]),
        ),
        "masked vs plain": (np.ma.array([1, 2, 3]), np.array([1, 2, 3])),
        "masked fill value": (
            np.ma.array([1, 2], mask=[0, 1], fill_value=7),
            np.ma.array([1, 2], mask=[0, 1], fill_value=8),
        ),
        "matrix vs ndarray": (_MATRIX, np.array([[1, 2]])),
        "ndarray subclass attribute": (_tagged("m"), _tagged("s")),
        "datetime unit": (
            np.array([1, 2], dtype="datetime64[s]"),
            np.array([1, 2], dtype="datetime64[ms]"),
        ),
        "timedelta vs int": (np.array([1, 2], dtype="timedelta64[s]"), np.array([1, 2])),
        "structured field names": (
            np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
            np.zeros(2, dtype=[("a", "i4"), ("c", "f8")]),
        ),
        "structured values": (
            np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
            np.array([(1, 3.0)], dtype=[("a", "i4"), ("b", "f8")]),
        ),
        "object array contents": (
            np.array([1, "a", None], dtype=object),
            np.array([1, "b", None], dtype=object),
        ),
        "ordered categorical": (
            pd.Categorical(["a", "b"], ordered=True),
            pd.Categorical(["a", "b"], ordered=False),
        ),
        "ordered categorical column": (
            pd.DataFrame({"c": pd.Categorical(["a", "b"], ordered=True)}),
            pd.DataFrame({"c": pd.Categorical(["a", "b"], ordered=False)}),
        ),
        "categorical categories": (
            pd.Categorical(["a"], categories=["a", "b"]),
            pd.Categorical(["a"], categories=["a", "c"]),
        ),
        "index name": (_frame().rename_axis("i"), _frame().rename_axis("j")),
        "columns name": (
            _frame().rename_axis("c", axis=1),
            _frame().rename_axis("d", axis=1),
        ),
        "frame attrs": (_with_attrs(unit="m"), _with_attrs(unit="s")),
        "index freq": (
            pd.DatetimeIndex(["2026-01-01", "2026-01-02"], freq="D"),
            pd.DatetimeIndex(["2026-01-01", "2026-01-02"]),
        ),
        "sparse dtype fill": (
            pd.arrays.SparseArray([0, 1, 0], fill_value=0),
            pd.arrays.SparseArray([0, 1, 0], fill_value=1),
        ),
        "interval closed": (
            pd.arrays.IntervalArray.from_breaks([0, 1, 2], closed="left"),
            pd.arrays.IntervalArray.from_breaks([0, 1, 2], closed="right"),
        ),
        "period freq": (
            pd.period_range("2026-01", periods=2, freq="M"),
            pd.period_range("2026-01-01", periods=2, freq="D"),
        ),
        "scipy sparse values": (_sparse(1.0), _sparse(2.0)),
        "scipy sparse format": (_sparse(1.0), _sparse(1.0).tocsc()),
        "list subclass items": (type("L", (list,), {})([1]), type("L", (list,), {})([2])),
        "dict subclass items": (type("D", (dict,), {})(a=1), type("D", (dict,), {})(a=2)),
        "set subclass vs set": (type("S", (set,), {})({1}), {1}),
        "namedtuple vs tuple": (collections.namedtuple("P", "x y")(1, 2), (1, 2)),
        "ufuncs": (np.square, np.sqrt),
        "bound builtin methods": ([1].append, [2].append),
        "huge ints": (10**5000, 10**5000 + 1),
    }
)

# Each row: two values that must get the same digest.
EQUAL = {
    "set order": ({"x", "y", 3}, {3, "y", "x"}),
    "nan": (float("nan"), float("nan")),
    "fortran order": (
        np.arange(12.0).reshape(3, 4),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    ),
    "strided view": (np.arange(20.0)[::2], np.ascontiguousarray(np.arange(20.0)[::2])),
    "frame copy": (_frame(), _frame().copy()),
    "object strings": (pd.Series(["a", "b"], dtype=object), pd.Series(["a", "b"], dtype=object)),
    "masked ints": (pd.array([1, None], dtype="Int64"), pd.array([1, None], dtype="Int64")),
    "categorical": (pd.Categorical(["a", "b", "a"]), pd.Categorical(["a", "b", "a"])),
    "arrow chunks": (pa.chunked_array([["a"], ["b", "c"]]), pa.chunked_array([["a", "b", "c"]])),
    "arrow slice": (pa.array(["x", "a", "b"]).slice(1), pa.array(["a", "b"])),
    "dataclass": (Point(1.0, [1]), Point(1.0, [1])),
    "polars frame": (
        pl.DataFrame({"a": [1, 2], "s": ["x", None]}),
        pl.DataFrame({"a": [1, 2], "s": ["x", None]}),
    ),
    "plain objects": (Plain(1, {"k": np.ones(3)}), Plain(1, {"k": np.ones(3)})),
    # numpy's pickle turns '>i4' into '<i4': byte order cannot be part of a key
    # that must survive the store.
    "byte order": (np.arange(3, dtype="<i4"), np.arange(3, dtype=">i4")),
    "ordered dicts": (collections.OrderedDict(a=1, b=2), collections.OrderedDict(a=1, b=2)),
    "masked copies": (np.ma.array([1, 2], mask=[0, 1]), np.ma.array([1, 2], mask=[0, 1]).copy()),
    "sparse copies": (_sparse(1.0), _sparse(1.0).copy()),
    "datetime layout": (
        np.arange(12).astype("datetime64[s]").reshape(3, 4),
        np.asfortranarray(np.arange(12).astype("datetime64[s]").reshape(3, 4)),
    ),
    "structured with padding": (
        np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "f8")], align=True)),
        np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "f8")], align=True)).copy(),
    ),
}


@pytest.mark.parametrize("case", sorted(DIFFERENT))
def test_different_values_differ(case: str) -> None:
    """Values that differ in type, shape, order or data get different digests."""
    a, b = DIFFERENT[case]
    assert digest(a) != digest(b)


@pytest.mark.parametrize("case", sorted(EQUAL))
def test_equal_values_agree(case: str) -> None:
    """Equal values get equal digests, whatever their memory layout or chunking."""
    a, b = EQUAL[case]
    assert digest(a) == digest(b)


def test_memory_maps_by_content(tmp_path: Any) -> None:
    """A memory map hashes by its content and mode, not by where the file is."""
    a, b = str(tmp_path / "a.bin"), str(tmp_path / "b.bin")
    for path in (a, b):
        m = _memmap(path, "w+")
        m[:] = [1, 2, 3, 4]
        m.flush()
    assert digest(_memmap(a, "r")) == digest(_memmap(b, "r"))
    assert digest(_memmap(a, "r")) != digest(_memmap(a, "r+"))
    assert digest(_memmap(a, "r")) != digest(np.array([1.0, 2, 3, 4]))


def test_untyped_numbers_agree() -> None:
    """With typed=False, 1, 1.0 and True are one argument, as in functools."""
    assert digest(1, typed=False) == digest(1.0, typed=False) == digest(True, typed=False)
    assert digest(0.0, typed=False) != digest(-0.0, typed=False)
    assert digest(1.5, typed=False) != digest(1, typed=False)


def test_cycles_are_handled() -> None:
    """Self-referencing containers hash, and differently from their unrolled form."""
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert digest(a) == digest(b)
    assert digest(a) != digest([1, [1]])
    d: dict[str, Any] = {}
    d["self"] = d
    assert digest(d)


def test_same_digest_in_a_new_process() -> None:
    """Digests do not depend on the process (string hash seeds, ids)."""
    code = (
        "import numpy as np, pandas as pd; from nbcache.keys.hashing import digest; "
        "print(digest([{'x', 'y', 'z'}, {'k': frozenset('abc')}, np.arange(3), "
        "pd.DataFrame({'s': list('ab')})]))"
    )
    seen = outputs_under_hash_seeds(code)
    assert len(seen) == 1


# Pinned digests: a change here changes every user's keys. Bump HASH_VERSION
# (so old entries miss cleanly) and update these on purpose, never by accident.
GOLDEN = {
    "none": (None, "f726b714a83a904fa3bb18f5e81b7ef2"),
    "int": (1, "ade38e00551cb529077ee13c66cd7bd6"),
    "float": (1.0, "78503a1955d616267cc0b1bc968ac1d6"),
    "str": ("héllo", "f3781af91179d472e8d4bebed743c678"),
    "nested": ({"a": [1, 2.5, ("t", None)], "b": {3, 4}}, "5b0a62d5ce5a99343e6d1d2499aec003"),
    "array": (np.arange(6, dtype=np.float64).reshape(2, 3), "22e5c0f53ef2c19271b6aceccee16c6a"),
    "frame": (_frame(), "73d2ccf050dd07fe216e6e510921bc53"),
    "big int": (10**40, "364ff980affc6619b4e0c7fccfd55087"),
    "ordered dict": (collections.OrderedDict(b=1, a=2), "a9d1ad31bdca5f5022af626f6bd9827c"),
    "defaultdict": (collections.defaultdict(list, a=[1]), "26683ae349d834c975ebab273fae60bb"),
    "datetimes": (np.arange(3).astype("datetime64[ms]"), "e2b7ca05f560075aca3ac17d68009567"),
    "structured": (
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        "6da65934a99cced78c3325270f841dca",
    ),
    "masked": (np.ma.array([1.0, 2.0], mask=[0, 1]), "025374033147bf937e01380afbed3c47"),
    "categorical series": (
        pd.Series(pd.Categorical(["a", "b"], ordered=True), name="c"),
        "93feb7319791549003d1f5e6c81fe405",
    ),
    "plain object": (Plain(1, ("x", b"y")), "d75b50db81d0d936c7c1a6b77a53fa93"),
    "ufunc": (np.square, "55b559e11719dbd520084681bedcf9ce"),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_digests(case: str) -> None:
    """Digests of a fixed table of values never change silently between releases."""
    value, expected = GOLDEN[case]
    assert digest(value) == expected


def test_unhashable_names_the_path() -> None:
    """A value that cannot be hashed raises KeyPicklingError naming where and what."""
    with pytest.raises(KeyPicklingError, match=r"`cfg\['session'\]\.lock` \(_thread.lock\)"):
        digest({"session": _Holder()}, name="cfg")


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_generator_is_unhashable() -> None:
    """Generators cannot be hashed: the error is chained to its cause."""
    with pytest.raises(KeyPicklingError) as info:
        digest(i for i in range(3))
    assert info.value.__cause__ is not None


def test_describe() -> None:
    """Summaries give type and shape or length for "why did it miss"."""
    assert describe(np.zeros((3, 4))) == {"type": "numpy.ndarray", "shape": [3, 4]}
    assert describe(_frame())["shape"] == [5, 3]
    assert describe([1, 2]) == {"type": "list", "len": 2}
    assert describe(7) == {"type": "int", "repr": "7"}


class _Tensor:
    """A CPU tensor that offers its buffer only through DLPack, as torch and jax do."""

    def __init__(self, data: np.ndarray, requires_grad: bool = False) -> None:
        self._data = data
        self.requires_grad = requires_grad

    @property
    def dtype(self) -> Any:
        return self._data.dtype

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._data.__dlpack_device__()

    def __reduce__(self) -> Any:
        raise TypeError("not picklable here")


def test_tensors_by_their_dlpack_buffer() -> None:
    """A tensor hashes by its buffer through DLPack, with its dtype and gradient flag."""
    a = _Tensor(np.arange(4.0))
    assert digest(a) == digest(_Tensor(np.arange(4.0)))
    assert digest(a) != digest(_Tensor(np.arange(4.0) + 1))
    assert digest(a) != digest(_Tensor(np.arange(4.0), requires_grad=True))
    assert digest(a) != digest(np.arange(4.0))


def test_xarray_by_buffers() -> None:
    """xarray objects hash by dims, coordinates, data and attrs."""
    xr = pytest.importorskip("xarray")
    a = xr.DataArray(np.arange(3.0), dims="x", coords={"x": [1, 2, 3]}, attrs={"u": "m"})
    assert digest(a) == digest(a.copy(deep=True))
    assert digest(a) != digest(a.assign_attrs(u="s"))
    assert digest(a) != digest(a.assign_coords(x=[1, 2, 4]))
    assert digest(a.to_dataset(name="v")) != digest(a.to_dataset(name="w"))


class _Bunch(dict):  # type: ignore[type-arg]
    """statsmodels' and scikit-learn's Bunch: a dict whose attributes are its items."""

    def __init__(self, **items: object) -> None:
        super().__init__(items)
        self.__dict__ = self


def test_a_dict_that_is_its_own_dict_keeps_its_digest_through_pickle() -> None:
    """A Bunch comes back from pickle with a separate, equal __dict__: the same digest,
    so a cell reading a statsmodels Dataset restores after a restart."""
    import pickle

    bunch = _Bunch(data=[1, 2, 3], names=("a", "b"))
    again = pickle.loads(pickle.dumps(bunch))
    assert again == bunch and vars(again) is not again
    assert digest(again) == digest(bunch)
    assert digest(_Bunch(data=[1, 2, 4], names=("a", "b"))) != digest(bunch)
