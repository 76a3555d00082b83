"""Hashing rules for scipy sparse matrices and xarray objects: by their buffers.

The reduce-protocol fallback would also reach their arrays, but through
private attributes that change between releases, and for xarray through
lazily loaded backends.  These rules name what the value shows: a sparse
matrix's format, shape, dtype and index arrays; an xarray object's dims,
coordinates, data, ``attrs`` and ``encoding``.

:data:`RULES` is registered by ``nbcache.keys``; this module imports only
:mod:`nbcache.keys.hashing`.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

from .classes import Matcher, subclass_of
from .node import Node, Request, Rule

__all__ = ["RULES"]

Parts = Generator[Request, bytes, None]

# The arrays each compressed format is made of (lil and dok go through reduce).
_SPARSE_PARTS = {
    "csr": ("data", "indices", "indptr"),
    "csc": ("data", "indices", "indptr"),
    "bsr": ("data", "indices", "indptr"),
    "coo": ("data", "row", "col"),
    "dia": ("data", "offsets"),
}


def _sparse_rule(n: Node, value: Any) -> Parts:
    fmt = str(value.format)
    n.tag(b"scipy.sparse")
    yield type(value), ".__class__"
    n.text(f"{fmt}|{value.dtype.str}|{value.shape}")
    names = _SPARSE_PARTS.get(fmt)
    if names is None:
        yield value.tocoo(), ".tocoo()"  # every entry, in the one canonical order coo keeps
        return
    if fmt in ("csr", "csc"):
        n.count(int(bool(value.has_sorted_indices)))
    if fmt == "bsr":
        n.text(str(value.blocksize))
    for name in names:
        yield getattr(value, name), f".{name}"


def _variable_parts(n: Node, variable: Any, path: str) -> Parts:
    np = sys.modules["numpy"]
    n.tag(b"xarray.Variable")
    yield tuple(variable.dims), f"{path}.dims"
    yield dict(variable.attrs), f"{path}.attrs"
    yield dict(variable.encoding), f"{path}.encoding"
    yield np.asarray(variable.values), f"{path}.values"


def _dataarray_rule(n: Node, value: Any) -> Parts:
    n.tag(b"xarray.DataArray")
    yield type(value), ".__class__"
    yield value.name, ".name"
    yield from _variable_parts(n, value.variable, "")
    yield from _coords_parts(n, value.coords, ".coords")


def _dataset_rule(n: Node, value: Any) -> Parts:
    n.tag(b"xarray.Dataset")
    yield type(value), ".__class__"
    yield dict(value.attrs), ".attrs"
    yield dict(value.encoding), ".encoding"
    n.count(len(value.data_vars))
    for name, variable in value.data_vars.items():
        yield name, ".<name>"
        yield from _variable_parts(n, variable.variable, f"[{name!r}]")
    yield from _coords_parts(n, value.coords, ".coords")


def _coords_parts(n: Node, coords: Any, path: str) -> Parts:
    n.count(len(coords))
    for name in coords:
        yield name, f"{path}.<name>"
        yield from _variable_parts(n, coords[name].variable, f"{path}[{name!r}]")


def _variable_rule(n: Node, value: Any) -> Parts:
    yield type(value), ".__class__"
    yield from _variable_parts(n, value, "")


RULES: tuple[tuple[Matcher, Rule], ...] = (
    (subclass_of("scipy.sparse", "spmatrix", "sparray"), _sparse_rule),
    (subclass_of("xarray", "DataArray"), _dataarray_rule),
    (subclass_of("xarray", "Dataset"), _dataset_rule),
    (subclass_of("xarray", "Variable"), _variable_rule),
)
