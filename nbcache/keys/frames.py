"""Hashing rules for pandas, pyarrow and polars: columns by their buffers, never row by row.

Only asked about values of those types, so the libraries are already
imported.  String columns go through Arrow's offsets and data buffers where
they exist, and through pandas' vectorised ``hash_array`` for Python strings;
only columns of mixed Python objects fall back to hashing each element.

What a frame shows besides its cells counts too: column and index names,
dtypes in full (a categorical's categories and whether it is ordered, a time
zone, an extension dtype's parameters), an index's ``freq``, ``attrs``, the
flags, and the class of a subclass.

:data:`RULES` is registered by ``nbcache.keys``; this module imports only
:mod:`nbcache.keys.hashing`.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Generator
from typing import Any

from .classes import Matcher, subclass_of, type_name
from .node import Node, Request, Rule

__all__ = ["RULES"]

Parts = Generator[Request, bytes, None]


def _dataframe_rule(n: Node, frame: Any) -> Parts:
    pd = sys.modules["pandas"]
    n.tag(b"pd.DataFrame")
    if type(frame) is not pd.DataFrame:
        yield type(frame), ".__class__"
    yield from _index_parts(n, frame.columns, ".columns")
    yield from _index_parts(n, frame.index, ".index")
    yield from _frame_extras(n, frame)
    for position, name in enumerate(frame.columns):
        yield from _values_parts(n, frame.iloc[:, position].array, f"[{name!r}]")


def _frame_extras(n: Node, value: Any) -> Parts:
    """``attrs`` and the flags: shown by neither the data nor a constructor call."""
    n.tag(b"attrs")
    yield dict(value.attrs), ".attrs"
    n.count(int(bool(value.flags.allows_duplicate_labels)))


def _series_rule(n: Node, series: Any) -> Parts:
    pd = sys.modules["pandas"]
    n.tag(b"pd.Series")
    if type(series) is not pd.Series:
        yield type(series), ".__class__"
    yield series.name, ".name"
    yield from _index_parts(n, series.index, ".index")
    yield from _frame_extras(n, series)
    yield from _values_parts(n, series.array, "")


def _index_rule(n: Node, index: Any) -> Parts:
    yield from _index_parts(n, index, "")


def _index_parts(n: Node, index: Any, path: str) -> Parts:
    pd = sys.modules["pandas"]
    n.tag(type_name(type(index)).encode())
    yield list(index.names), f"{path}.names"
    if isinstance(index, pd.MultiIndex):
        for level, (values, codes) in enumerate(zip(index.levels, index.codes, strict=True)):
            yield from _index_parts(n, values, f"{path}.levels[{level}]")
            yield codes, f"{path}.codes[{level}]"
        return
    if isinstance(index, pd.RangeIndex):
        n.count(3)
        n.add(struct.pack("<qqq", index.start, index.stop, index.step))
        return
    freq = getattr(index, "freq", None)  # DatetimeIndex, TimedeltaIndex, PeriodIndex
    n.text(f"freq={freq!s}")
    yield from _values_parts(n, index.array, path)


def _dtype_text(dtype: Any) -> str:
    """A dtype in full: ``str`` drops a categorical's ordering and a sparse fill value."""
    pd = sys.modules["pandas"]
    if isinstance(dtype, pd.CategoricalDtype):
        return f"category|ordered={dtype.ordered}"  # the categories are hashed as an index
    return f"{type_name(type(dtype))}|{dtype!s}|{dtype!r}"


def _values_parts(n: Node, values: Any, path: str) -> Parts:
    """One column's values, by the fastest faithful route for its storage."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    n.text(_dtype_text(values.dtype))
    numpy_backed = getattr(pd.arrays, "NumpyExtensionArray", None) or pd.arrays.PandasArray
    masked = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    if isinstance(values, np.ndarray):
        yield from _numpy_values(n, values, path)
    elif isinstance(values, numpy_backed):
        yield from _numpy_values(n, values.to_numpy(), path)
    elif isinstance(values, pd.Categorical):
        yield from _index_parts(n, values.categories, f"{path}.categories")
        yield values.codes, f"{path}.codes"
    elif hasattr(values, "__arrow_array__") and "pyarrow" in sys.modules:
        yield from _arrow_array_parts(n, values.__arrow_array__(), path)
    elif hasattr(values, "asi8"):  # datetimes, timedeltas, periods (the dtype holds the zone)
        yield np.asarray(values.isna()), f"{path}.<missing>"
        yield values.asi8, path
    elif isinstance(values, masked):
        yield np.asarray(values.isna()), f"{path}.<missing>"
        yield values.to_numpy(dtype=values.dtype.numpy_dtype, na_value=0), path
    elif isinstance(values, pd.arrays.SparseArray):
        yield values.sp_index.indices, f"{path}.sp_index"
        yield np.asarray(values.sp_values), f"{path}.sp_values"
        yield values.fill_value, f"{path}.fill_value"
    else:
        yield from _numpy_values(n, np.asarray(values, dtype=object), path)


def _numpy_values(n: Node, values: Any, path: str) -> Parts:
    pd = sys.modules["pandas"]
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) in (
        "string",
        "bytes",
        "empty",
    ):
        n.tag(b"hash_array")
        yield pd.util.hash_array(values, categorize=False), path
        return
    yield values, path  # numbers by buffer, mixed objects element by element


def _arrow_table_rule(n: Node, table: Any) -> Parts:
    n.tag(b"pa.Table")
    n.text(type(table).__name__)
    # Metadata in full (pandas keeps its index there): a cell can read it.
    n.text(table.schema.to_string(show_schema_metadata=True, truncate_metadata=False))
    n.count(table.num_rows)
    for name, column in zip(table.column_names, table.columns, strict=True):
        yield from _arrow_array_parts(n, column, f"[{name!r}]")


def _arrow_array_rule(n: Node, array: Any) -> Parts:
    yield from _arrow_array_parts(n, array, "")


def _arrow_array_parts(n: Node, array: Any, path: str) -> Parts:
    pa = sys.modules["pyarrow"]
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()  # chunk boundaries are not part of the value
    kind = array.type
    n.tag(b"pa.Array")
    n.text(str(kind))
    n.count(len(array))
    if array.null_count:
        yield array.is_null().to_numpy(zero_copy_only=False), f"{path}.<missing>"
    types = pa.types
    if types.is_string(kind) or types.is_binary(kind):
        yield from _var_width(n, array, "<i4", path)
    elif types.is_large_string(kind) or types.is_large_binary(kind):
        yield from _var_width(n, array, "<i8", path)
    elif types.is_dictionary(kind):
        yield from _arrow_array_parts(n, array.indices, f"{path}.indices")
        yield from _arrow_array_parts(n, array.dictionary, f"{path}.dictionary")
    elif (types.is_integer(kind) or types.is_floating(kind) or types.is_temporal(kind)) and (
        not types.is_boolean(kind)
    ):
        _fixed_width(n, array)
    else:
        yield array.to_pylist(), path


def _fixed_width(n: Node, array: Any) -> None:
    import pyarrow.compute as pc  # pyarrow itself is already loaded

    if array.null_count:
        # Null slots hold arbitrary bytes; zero them so equal arrays hash equal.
        array = pc.if_else(array.is_null(), sys.modules["pyarrow"].scalar(0, array.type), array)
    width = array.type.bit_width // 8
    data = array.buffers()[1]
    n.raw(memoryview(data)[array.offset * width : (array.offset + len(array)) * width])


def _var_width(n: Node, array: Any, offset_type: str, path: str) -> Parts:
    np = sys.modules["numpy"]
    _validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    yield offsets - start, f"{path}.<offsets>"
    n.raw(memoryview(data_buffer)[start:end] if data_buffer is not None else b"")


def _polars_rule(n: Node, value: Any) -> Parts:
    n.tag(b"polars")
    n.text(type(value).__name__)
    arrow = value.to_arrow()
    if hasattr(arrow, "schema"):
        yield from _arrow_table_rule(n, arrow)
    else:
        yield value.name, ".name"
        yield from _arrow_array_parts(n, arrow, "")


RULES: tuple[tuple[Matcher, Rule], ...] = (
    (subclass_of("pandas", "DataFrame"), _dataframe_rule),
    (subclass_of("pandas", "Series"), _series_rule),
    (subclass_of("pandas", "Index"), _index_rule),
    (subclass_of("pyarrow", "Table", "RecordBatch"), _arrow_table_rule),
    (subclass_of("pyarrow", "Array", "ChunkedArray"), _arrow_array_rule),
    (subclass_of("polars", "DataFrame", "Series"), _polars_rule),
)
