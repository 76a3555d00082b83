"""Safe pickling: round trips of what users cache, and errors that say where and what."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbcache import (
    CacheError,
    KeyPicklingError,
    ValuePicklingError,
    ValueUnpicklingError,
    try_pickle,
    try_unpickle,
)
from nbcache.entry.pickling import OUT_OF_BAND_MIN, describe_unpicklable, dump_parts, load_parts


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": np.arange(200_000, dtype="float64"),
            "s": [f"row{i}" for i in range(200_000)],
            "c": pd.Categorical(["a", "b"] * 100_000),
        },
        index=pd.date_range("2026-01-01", periods=200_000, freq="s"),
    )


VALUES: dict[str, Any] = {
    "int": 1,
    "nested": {"a": [1, 2.5, ("t", None)], "b": {frozenset({1, 2})}, "c": b"bytes" * 100},
    "big_bytes": b"x" * (3 * OUT_OF_BAND_MIN),
    "array": np.random.default_rng(0).random((512, 1024)),
    "fortran": np.asfortranarray(np.random.default_rng(1).random((600, 700))),
    "int_array": np.arange(10**6, dtype=np.int32),
    "frame": _frame(),
    "series": pd.Series(np.arange(300_000), name="s"),
    "mixed": [np.zeros(2**18), {"k": np.ones(10)}, "text"],
}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        return bool(a.equals(b)) and list(a.dtypes) == list(b.dtypes)
    if isinstance(a, pd.Series):
        return bool(a.equals(b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_round_trip_bytes(name: str) -> None:
    """try_pickle then try_unpickle gives an equal value of the same type."""
    value = VALUES[name]
    assert _equal(try_unpickle(try_pickle(value)), value)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_round_trip_parts(name: str) -> None:
    """The store's stream-plus-buffers form gives an equal value back."""
    value = VALUES[name]
    parts = dump_parts(value)
    assert _equal(load_parts(parts.stream, parts.buffers), value)


def test_large_buffers_stay_out_of_band() -> None:
    """A big array's data is not copied into the pickle stream."""
    array = np.ones(4 * 2**20)  # 32 MB
    parts = dump_parts({"a": array, "small": np.ones(10)})
    assert len(parts.stream) < 4096
    assert [b.nbytes for b in parts.buffers] == [array.nbytes]
    assert np.shares_memory(np.frombuffer(parts.buffers[0], dtype=array.dtype), array)


def test_try_pickle_bytes_are_a_plain_pickle() -> None:
    """try_pickle's bytes load with the standard library alone."""
    value = {"a": np.arange(5 * OUT_OF_BAND_MIN, dtype=np.uint8)}
    assert np.array_equal(pickle.loads(try_pickle(value))["a"], value["a"])


def test_lambdas_and_closures_fall_back_to_cloudpickle() -> None:
    """Lambdas and closures, which pickle refuses, round-trip by value."""
    offset = 10

    def add(x: int) -> int:
        return x + offset

    parts = dump_parts({"f": lambda x: x * 2, "g": add})
    assert parts.by_value
    loaded = load_parts(parts.stream, parts.buffers)
    assert loaded["f"](4) == 8
    assert loaded["g"](1) == 11


def test_main_defined_objects_load_in_a_new_process(tmp_path: Path) -> None:
    """A class and a function defined in __main__ (a notebook) load after a restart."""
    out = tmp_path / "value.pkl"
    writer = f"""
import numpy as np
from nbcache import try_pickle

class Model:
    def __init__(self, w):
        self.w = w
    def predict(self, x):
        return float(self.w @ x)

def helper(x):
    return x + 1

open({str(out)!r}, "wb").write(try_pickle({{"model": Model(np.ones(3)), "helper": helper}}))
"""
    reader = f"""
import numpy as np
from nbcache import try_unpickle
value = try_unpickle(open({str(out)!r}, "rb").read())
print(value["model"].predict(np.arange(3.0)), value["helper"](1))
"""
    subprocess.run([sys.executable, "-c", writer], check=True)
    done = subprocess.run([sys.executable, "-c", reader], check=True, capture_output=True)
    assert done.stdout.split() == [b"3.0", b"2"]


class _Session:
    def __init__(self) -> None:
        self._lock = threading.Lock()


class _Model:
    def __init__(self) -> None:
        self.weights = [1.0, 2.0]
        self.session = _Session()


def test_failure_names_type_and_path() -> None:
    """The error says which part of the value failed, and its type."""
    with pytest.raises(ValuePicklingError) as info:
        try_pickle({"model": _Model(), "ok": 1}, name="result")
    message = str(info.value)
    assert "result['model'].session._lock" in message
    assert "_thread.lock" in message
    assert "To store it" in message
    assert isinstance(info.value.__cause__, TypeError)
    assert isinstance(info.value, CacheError)


def test_describe_unpicklable_in_lists_and_slots() -> None:
    """Paths go through lists, tuples and __slots__ objects."""

    class Slotted:
        __slots__ = ("handle",)

        def __init__(self) -> None:
            self.handle = threading.Lock()

    assert describe_unpicklable([1, (2, Slotted())], "v") == "v[1][1].handle (_thread.lock)"


def test_generator_is_named() -> None:
    """A generator, which cannot pickle at all, is named by its type."""
    with pytest.raises(ValuePicklingError, match=r"gen \(generator\)"):
        try_pickle((i for i in range(3)), name="gen")


def test_raise_if_failed_picks_the_error_class() -> None:
    """raise_if_failed chooses the class raised, and None returns None."""
    lock = threading.Lock()
    with pytest.raises(KeyPicklingError) as info:
        try_pickle(lock, KeyPicklingError)
    assert isinstance(info.value.__cause__, TypeError)
    assert try_pickle(lock, None) is None
    assert try_unpickle(b"not a pickle", None) is None


def test_unpickle_missing_module_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value whose module is gone says which module to install."""
    (tmp_path / "gone_mod.py").write_text("class Obj:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_mod  # type: ignore[import-not-found]

    data = try_pickle(gone_mod.Obj())
    monkeypatch.delitem(sys.modules, "gone_mod")
    (tmp_path / "gone_mod.py").unlink()
    with pytest.raises(ValueUnpicklingError, match=r"'gone_mod'.*Install it") as info:
        try_unpickle(data)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_unpickle_garbage() -> None:
    """Damaged bytes are a ValueUnpicklingError chained to the unpickler's error."""
    with pytest.raises(ValueUnpicklingError, match="recomputed") as info:
        try_unpickle(b"\x80\x05garbage")
    assert info.value.__cause__ is not None


# -- restored code is live code ------------------------------------------------

_CELL = """
scale = 2

def f(x):
    return x * scale

class Model:
    def predict(self, x):
        return f(x) + 1

def fact(n):
    return 1 if n < 2 else n * fact(n - 1)
"""


def _defined_in_a_cell() -> tuple[dict[str, Any], str]:
    from tests.notebook_sim import run_cell

    namespace = run_cell(_CELL, {})
    return namespace, namespace["f"].__code__.co_filename


def test_restored_functions_read_the_live_namespace() -> None:
    """After a restart, `scale = 10` then `f(2)` uses the new scale, as a fresh def would."""
    import linecache

    from nbcache.entry.pickling import restoring_into

    namespace, filename = _defined_in_a_cell()
    parts = dump_parts({k: namespace[k] for k in ("f", "Model", "fact")})
    del linecache.cache[filename]  # a new kernel has never seen the cell
    fresh: dict[str, Any] = {"__name__": "__main__"}
    with restoring_into(fresh):
        restored = load_parts(parts.stream, parts.buffers)
    fresh.update(restored)
    fresh["scale"] = 10
    assert restored["f"](2) == 20
    assert restored["Model"]().predict(2) == 21
    assert restored["fact"](5) == 120
    assert restored["f"].__globals__ is fresh


def test_restored_functions_fingerprint_as_defined() -> None:
    """A restored function fingerprints by its source, as when it was defined: no needless miss."""
    import linecache

    from nbcache.entry.pickling import restoring_into
    from nbcache.keys.code import fingerprint

    namespace, filename = _defined_in_a_cell()
    before = {k: fingerprint(namespace[k]) for k in ("f", "Model", "fact")}
    parts = dump_parts({k: namespace[k] for k in ("f", "Model", "fact")})
    del linecache.cache[filename]
    fresh: dict[str, Any] = {"__name__": "__main__"}
    with restoring_into(fresh):
        restored = load_parts(parts.stream, parts.buffers)
    fresh.update(restored, scale=2)
    assert {k: fingerprint(v) for k, v in restored.items()} == before


def _library_helper(value: Any) -> Any:
    """A name only this module's globals hold, as scikit-learn's wrappers read theirs."""
    return ("wrapped", value)


def _library_wraps(method: Any) -> Any:
    """A library's wrapper around a notebook method (scikit-learn's set_output wraps
    ``transform``): functools.wraps gives it the method's ``__module__``, "__main__"."""
    import functools

    @functools.wraps(method)
    def wrapped(self: Any, *args: Any) -> Any:
        return _library_helper(method(self, *args))

    return wrapped


def test_a_library_wrapper_around_a_notebook_method_keeps_the_librarys_globals() -> None:
    """Restored, the wrapper still reads the library's names and the method the notebook's."""
    import linecache

    from nbcache.entry.pickling import restoring_into
    from tests.notebook_sim import run_cell

    cell = (
        "class Rescale:\n    def transform(self, x):\n        return x / scale\n"
        "Rescale.transform = wraps(Rescale.transform)\n"
    )
    namespace = run_cell(cell, {"wraps": _library_wraps, "scale": 2})
    assert namespace["Rescale"].transform.__module__ == "__main__"
    parts = dump_parts({"Rescale": namespace["Rescale"]})
    linecache.cache.pop(namespace["Rescale"].transform.__wrapped__.__code__.co_filename, None)
    fresh: dict[str, Any] = {"__name__": "__main__", "scale": 4}
    with restoring_into(fresh):
        restored = load_parts(parts.stream, parts.buffers)
    assert restored["Rescale"]().transform(8) == ("wrapped", 2.0)


def test_globals_are_not_pickled_with_notebook_functions() -> None:
    """A notebook function reading an unpicklable global (a lock) still stores."""
    from tests.notebook_sim import run_cell

    source = "import threading\nLOCK = threading.Lock()\ndef g():\n    return LOCK\n"
    namespace = run_cell(source, {})
    assert dump_parts(namespace["g"]).by_value


def test_restored_function_in_a_new_process(tmp_path: Path) -> None:
    """Across processes: the function reads the new kernel's globals and keeps its fingerprint."""
    out = tmp_path / "f.pkl"
    cell = "scale = 2\ndef f(x):\n    return x * scale\n"
    writer = f"""
import linecache, __main__
from nbcache.entry.pickling import dump_parts
from nbcache.keys.code import fingerprint
cell = {cell!r}
linecache.cache["<cell-1>"] = (len(cell), None, cell.splitlines(True), "<cell-1>")
exec(compile(cell, "<cell-1>", "exec"), __main__.__dict__)
open({str(out)!r}, "wb").write(dump_parts(f).stream)
print(fingerprint(f))
"""
    reader = f"""
from nbcache.entry.pickling import load_parts
from nbcache.keys.code import fingerprint
f = load_parts(open({str(out)!r}, "rb").read())
scale = 2
print(fingerprint(f))
scale = 10
print(f(2))
"""
    wrote = subprocess.run([sys.executable, "-c", writer], check=True, capture_output=True)
    read = subprocess.run([sys.executable, "-c", reader], check=True, capture_output=True)
    assert read.stdout.split() == [wrote.stdout.strip(), b"20"]
