"""Hashing rules for pandas, pyarrow and polars: columns by their buffers, never row by row.

Only called for values of those types, so the libraries are already imported.
String columns go through Arrow's offsets and data buffers where they exist,
and through pandas' vectorised ``hash_array`` for Python strings; only columns
of mixed Python objects fall back to hashing each element.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hashing import Hasher

__all__ = [
    "feed_arrow_array",
    "feed_arrow_table",
    "feed_dataframe",
    "feed_index",
    "feed_polars",
    "feed_series",
]


def _feed_array(h: Hasher, array: Any, path: str) -> None:
    from .hashing import _feed_ndarray

    _feed_ndarray(h, array, path)


def feed_dataframe(h: Hasher, frame: Any, path: str) -> None:
    h.tag(b"pd.DataFrame")
    feed_index(h, frame.columns, f"{path}.columns")
    feed_index(h, frame.index, f"{path}.index")
    for position, name in enumerate(frame.columns):
        _feed_values(h, frame.iloc[:, position].array, f"{path}[{name!r}]")


def feed_series(h: Hasher, series: Any, path: str) -> None:
    h.tag(b"pd.Series")
    h.feed(series.name, f"{path}.name")
    feed_index(h, series.index, f"{path}.index")
    _feed_values(h, series.array, path)


def feed_index(h: Hasher, index: Any, path: str) -> None:
    pd = sys.modules["pandas"]
    h.feed(list(index.names), f"{path}.names")
    if isinstance(index, pd.MultiIndex):
        h.tag(b"pd.MultiIndex")
        for level, (values, codes) in enumerate(zip(index.levels, index.codes, strict=True)):
            feed_index(h, values, f"{path}.levels[{level}]")
            _feed_array(h, codes, f"{path}.codes[{level}]")
        return
    if isinstance(index, pd.RangeIndex):
        h.tag(b"pd.RangeIndex")
        h.raw(struct.pack("<qqq", index.start, index.stop, index.step))
        return
    h.tag(b"pd.Index")
    _feed_values(h, index.array, path)


def _feed_values(h: Hasher, values: Any, path: str) -> None:
    """One column's values, by the fastest faithful route for its storage."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    h.text(str(values.dtype))
    numpy_backed = getattr(pd.arrays, "NumpyExtensionArray", None) or pd.arrays.PandasArray
    masked = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    if isinstance(values, np.ndarray):
        _feed_numpy_values(h, values, path)
    elif isinstance(values, numpy_backed):
        _feed_numpy_values(h, values.to_numpy(), path)
    elif hasattr(values, "__arrow_array__") and "pyarrow" in sys.modules:
        feed_arrow_array(h, values.__arrow_array__(), path)
    elif isinstance(values, pd.Categorical):
        feed_index(h, values.categories, f"{path}.categories")
        _feed_array(h, values.codes, f"{path}.codes")
    elif hasattr(values, "asi8"):  # datetimes, timedeltas, periods (dtype holds the zone)
        _feed_array(h, values.isna(), f"{path}.<missing>")
        _feed_array(h, values.asi8, path)
    elif isinstance(values, masked):
        _feed_array(h, values.isna(), f"{path}.<missing>")
        _feed_array(h, values.to_numpy(dtype=values.dtype.numpy_dtype, na_value=0), path)
    else:
        _feed_numpy_values(h, np.asarray(values, dtype=object), path)


def _feed_numpy_values(h: Hasher, values: Any, path: str) -> None:
    pd = sys.modules["pandas"]
    if values.dtype != object:
        _feed_array(h, values, path)
        return
    if pd.api.types.infer_dtype(values, skipna=False) in ("string", "bytes", "empty"):
        h.tag(b"hash_array")
        _feed_array(h, pd.util.hash_array(values, categorize=False), path)
        return
    _feed_array(h, values, path)  # mixed objects: element by element


def feed_arrow_table(h: Hasher, table: Any, path: str) -> None:
    h.tag(b"pa.Table")
    h.text(table.schema.to_string(show_schema_metadata=False))
    h.raw(struct.pack("<Q", table.num_rows))
    for name, column in zip(table.column_names, table.columns, strict=True):
        feed_arrow_array(h, column, f"{path}[{name!r}]")


def feed_arrow_array(h: Hasher, array: Any, path: str) -> None:
    pa = sys.modules["pyarrow"]
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()  # chunk boundaries are not part of the value
    kind = array.type
    h.tag(b"pa.Array")
    h.text(str(kind))
    h.raw(struct.pack("<Q", len(array)))
    if array.null_count:
        _feed_array(h, array.is_null().to_numpy(zero_copy_only=False), f"{path}.<missing>")
    types = pa.types
    if types.is_string(kind) or types.is_binary(kind):
        _feed_var_width(h, array, "<i4", path)
    elif types.is_large_string(kind) or types.is_large_binary(kind):
        _feed_var_width(h, array, "<i8", path)
    elif types.is_dictionary(kind):
        feed_arrow_array(h, array.indices, f"{path}.indices")
        feed_arrow_array(h, array.dictionary, f"{path}.dictionary")
    elif (types.is_integer(kind) or types.is_floating(kind) or types.is_temporal(kind)) and (
        not types.is_boolean(kind)
    ):
        _feed_fixed_width(h, array, path)
    else:
        h.feed(array.to_pylist(), path)


def _feed_fixed_width(h: Hasher, array: Any, path: str) -> None:
    import pyarrow.compute as pc  # pyarrow itself is already loaded

    if array.null_count:
        # Null slots hold arbitrary bytes; zero them so equal arrays hash equal.
        array = pc.if_else(array.is_null(), sys.modules["pyarrow"].scalar(0, array.type), array)
    width = array.type.bit_width // 8
    data = array.buffers()[1]
    view = memoryview(data)[array.offset * width : (array.offset + len(array)) * width]
    h.raw(view)


def _feed_var_width(h: Hasher, array: Any, offset_type: str, path: str) -> None:
    np = sys.modules["numpy"]
    _validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    _feed_array(h, offsets - start, f"{path}.<offsets>")
    h.raw(memoryview(data_buffer)[start:end] if data_buffer is not None else b"")


def feed_polars(h: Hasher, value: Any, path: str) -> None:
    h.tag(b"polars")
    h.text(type(value).__name__)
    arrow = value.to_arrow()
    if hasattr(arrow, "schema"):
        feed_arrow_table(h, arrow, path)
    else:
        h.feed(value.name, f"{path}.name")
        feed_arrow_array(h, arrow, path)
