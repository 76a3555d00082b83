"""Hashing rules for numpy: arrays by dtype, shape and buffer; subclasses by their state too.

Only asked about numpy's types, so numpy is imported already.  Bytes go to
XXH3 in C order as uint8, in slices that check the budget's clock, so
datetime64 and timedelta64 (which ``memoryview`` refuses) and views of any
layout hash as their C-ordered copy would.
"""

from __future__ import annotations

import sys
from typing import Any

import xxhash

from ..classes import Matcher, instance_dict, subclass_of
from ..node import Node, Parts, Rule
from .containers import items_parts

__all__ = ["RULES", "ndarray_rule"]

_CHUNK = 1 << 22  # 4 MiB slices between two looks at the clock


def _dtype_text(dtype: Any) -> str:
    if dtype.metadata:  # equal dtypes may differ in metadata: never from the cache
        return f"{dtype.str}|{dtype!s}|{sorted(dtype.metadata.items())!r}"
    text = _DTYPE_TEXTS.get(dtype)
    if text is None:
        # str(dtype) runs Python code in numpy, a fitted forest has hundreds of arrays.
        text = _DTYPE_TEXTS[dtype] = f"{dtype.str}|{dtype!s}"  # units, fields, subarrays
    return text


_DTYPE_TEXTS: dict[Any, str] = {}


def ndarray_rule(n: Node, array: Any) -> Parts:
    """An array by dtype, shape and buffer; a subclass adds its class and its state."""
    np = sys.modules["numpy"]
    cls = type(array)
    n.tag(b"ndarray")
    if cls is not np.ndarray:
        yield cls, ".__class__"
        yield from _ndarray_subclass_state(n, array, np)
        array = array.view(np.ndarray)
    dtype = array.dtype
    if not dtype.isnative:
        # By value in native order: numpy's own pickle gives a '>i4' array back
        # as '<i4', so a value restored from the store would otherwise miss.
        dtype = dtype.newbyteorder("=")
        array = array.astype(dtype)
    n.text(_dtype_text(dtype))
    n.count(array.ndim)
    for size in array.shape:
        n.count(size)
    if dtype.fields is not None:
        for field in dtype.names:  # field by field: padding bytes are not content
            yield array[field], f"[{field!r}]"
        return
    if dtype.hasobject:
        atom = n.atom
        for index, item in enumerate(array.ravel(order="C").tolist()):
            if not atom(item):
                yield item, f".flat[{index}]"
        return
    # The same bytes whatever the memory layout: C order, a slab at a time, as
    # uint8 (memoryview(array) refuses datetime64 and timedelta64).
    n.count(array.nbytes)
    hasher = xxhash.xxh3_128()
    if array.flags.c_contiguous:
        view = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
        for start in range(0, view.nbytes, _CHUNK):
            hasher.update(view[start : start + _CHUNK])
            n.check_clock()
    else:
        flat = array.reshape(array.shape[0], -1) if array.ndim > 1 else array
        rows = max(1, _CHUNK // max(1, flat[0:1].nbytes)) if len(flat) else 1
        for start in range(0, len(flat), rows):
            slab = np.ascontiguousarray(flat[start : start + rows])
            hasher.update(memoryview(slab.reshape(-1).view(np.uint8)))
            n.check_clock()
    n.add(bytes(hasher.digest()))


def _ndarray_subclass_state(n: Node, array: Any, np: Any) -> Parts:
    """What a subclass holds beside its buffer: a mask, a memory map's mode, attributes."""
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(array, ma.MaskedArray):
        n.tag(b"masked")
        yield np.asarray(ma.getmaskarray(array)), ".mask"
        yield array.fill_value, ".fill_value"
        n.count(int(bool(array.hardmask)))
        return
    if isinstance(array, np.memmap):
        n.tag(b"memmap")
        n.text(str(getattr(array, "mode", None)))
        return
    state = instance_dict(array)
    if state:
        n.tag(b"state")
        yield from items_parts(n, list(state.items()), attrs=True)


def _numpy_scalar_rule(n: Node, value: Any) -> Parts:
    n.tag(b"npscalar")
    dtype = value.dtype
    n.text(_dtype_text(dtype))
    if dtype.hasobject or dtype.fields is not None:
        yield value.item(), ".item()"
        return
    n.raw(value.tobytes())


RULES: tuple[tuple[Matcher, Rule], ...] = (
    (subclass_of("numpy", "ndarray"), ndarray_rule),
    (subclass_of("numpy", "generic"), _numpy_scalar_rule),
)
