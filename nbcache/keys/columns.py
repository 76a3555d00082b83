"""Columns: the items of one type among a container's, encoded at once in C.

A column knows each item's width and how to put its bytes where the layout
(``keys/batch.py``) places them: ints and floats as tagged 8-byte cells,
strings and bytes as a header row and their own bytes, anything the columns
cannot say as item by item would (ints beyond 64 bits, floats when untyped)
as one encode each.  Items are told apart by a code per exact type
(:data:`CODES`); ``ItemByItem`` says the container must go item by item.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from .node import NAN_BYTES, Walker, address_range, encoded, tag_rows

__all__ = [
    "CODES",
    "DICT",
    "LAST_SCALAR",
    "LIST",
    "OTHER",
    "SCALAR_COLUMNS",
    "TUPLE",
    "Column",
    "ItemByItem",
    "Varying",
    "le8",
    "place_rows",
    "select",
    "tagged",
    "type_codes",
]

_MAX_BYTES = 1 << 26  # more than this in one container's strings: item by item
_SHORT = 256  # strings up to this long are placed together; longer ones one by one

(_NONE, _BOOL, _INT, _FLOAT, _COMPLEX, _STR, _BYTES, _BYTEARRAY) = range(8)
(TUPLE, LIST, DICT, OTHER) = range(8, 12)
LAST_SCALAR = _BYTEARRAY


class _Codes(dict[type, int]):
    def __missing__(self, key: type) -> int:
        return OTHER


CODES = _Codes(
    {
        type(None): _NONE,
        bool: _BOOL,
        int: _INT,
        float: _FLOAT,
        complex: _COMPLEX,
        str: _STR,
        bytes: _BYTES,
        bytearray: _BYTEARRAY,
        tuple: TUPLE,
        list: LIST,
        dict: DICT,
    }
)


class ItemByItem(Exception):
    """Something in the container must be encoded by the walk, item by item."""


def type_codes(np: Any, items: Sequence[Any]) -> Any:
    """Each item's code (:data:`CODES`), by its exact type."""
    return np.fromiter(map(CODES.__getitem__, map(type, items)), np.int8, len(items))


class Column:
    """One type's items: their widths, and how to put their bytes in place."""

    holes: Any = None  # indices in the column of items the walk must hash

    def __init__(self, widths: Any, cells: Any = None) -> None:
        self.widths = widths
        self.cells = cells  # a row of bytes per item, all as wide

    def fill(self, np: Any, out: Any, starts: Any) -> None:
        if self.cells is None or not len(starts):
            return
        width = self.cells.shape[1]
        first = int(starts[0])
        if len(starts) == 1 or (np.diff(starts) == width).all():  # side by side: one copy
            out[first : first + width * len(starts)] = self.cells.ravel()
        else:
            place_rows(np, out, starts, self.cells)


def place_rows(np: Any, out: Any, starts: Any, rows: Any) -> None:
    """Each row of ``rows`` into ``out`` (bytes) from its start on."""
    width = rows.shape[1]
    if not len(starts) or not width:
        return
    # A view with a row starting at every byte: one fancy assignment writes each row.
    every = np.lib.stride_tricks.as_strided(
        out, shape=(len(out) - width + 1, width), strides=(1, 1), writeable=True
    )
    every[starts] = rows


def tagged(np: Any, tag: bytes, body: Any) -> Any:
    """``tag`` before each row of ``body`` (uint8, one row per item)."""
    if len(tag) == 1 and body.shape[1] == 8:
        return tag_rows(np, tag, body)
    rows = np.empty((len(body), len(tag) + body.shape[1]), np.uint8)
    rows[:, : len(tag)] = np.frombuffer(tag, np.uint8)
    rows[:, len(tag) :] = body
    return rows


def le8(np: Any, values: Any) -> Any:
    """int64 or float64 values as rows of 8 little-endian bytes."""
    return values.astype(values.dtype.newbyteorder("<"), copy=False).view(np.uint8).reshape(-1, 8)


def _pieces(np: Any, walk: Walker, column: list[Any]) -> Column:
    """Encoded one by one in Python (what the columns cannot say), placed together."""
    pieces = []
    for item in column:
        piece = encoded(walk, item)
        if piece is None:
            raise ItemByItem
        pieces.append(piece)
    return Varying(np, pieces, b"")


class Varying(Column):
    """Items of varying width: a fixed header row each, then their own bytes."""

    text = False  # data are ASCII strs, encoded when joined

    def __init__(self, np: Any, data: list[Any], tag: bytes, lengths: Any = None) -> None:
        if lengths is None:
            lengths = np.fromiter(map(len, data), np.int64, len(data))
        if int(lengths.sum()) > _MAX_BYTES:
            raise ItemByItem
        self.data, self.lengths, self.head = data, lengths, 0
        rows = None
        if tag:
            rows = tagged(np, tag, le8(np, lengths))
            self.head = rows.shape[1]
        super().__init__(lengths + self.head, rows)

    everything: bytes | None = None  # all the data joined, when known already

    def joined(self, data: list[Any]) -> bytes:
        if data is self.data and self.everything is not None:
            return self.everything
        return "".join(data).encode("ascii") if self.text else b"".join(data)

    def fill(self, np: Any, out: Any, starts: Any) -> None:
        super().fill(np, out, starts)
        starts = starts + self.head
        short = self.lengths <= _SHORT
        if not short.all():
            for at, piece in zip(starts[~short].tolist(), select(self.data, ~short), strict=True):
                out[at : at + len(piece)] = np.frombuffer(self.joined([piece]), np.uint8)
        data = self.data if short.all() else select(self.data, short)
        flat = np.frombuffer(self.joined(data), np.uint8)
        if flat.size:
            lengths = self.lengths[short]
            shift = starts[short] - (np.cumsum(lengths) - lengths)
            out[np.repeat(shift, lengths) + np.arange(flat.size)] = flat


def select(items: list[Any], mask: Any) -> list[Any]:
    return [item for item, keep in zip(items, mask.tolist(), strict=True) if keep]


def _none_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    return Column(1, np.full((len(column), 1), ord("N"), np.uint8))


def _bool_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    values = np.fromiter(column, np.uint8, len(column)).reshape(-1, 1)
    if walk.typed:
        return Column(2, tagged(np, b"B", values))
    return Column(9, tagged(np, b"i", le8(np, values.ravel().astype(np.int64))))


def _int_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    try:
        values = np.frombuffer(array.array("q", column), np.int64)
    except OverflowError:  # beyond 64 bits: each as its own length and bytes
        return _pieces(np, walk, column)
    low, high = address_range()
    if len(values) and values.max() >= low and values.min() < high:
        looks = values[(values >= low) & (values < high) & ((values & 7) == 0)]
        if looks.size:
            if walk.refs is not None and not walk.found.keys().isdisjoint(looks.tolist()):
                raise ItemByItem  # some name parts: written as references, by the walk
            walk.note_run(looks)
    return Column(9, tagged(np, b"i", le8(np, values)))


def _float_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    if not walk.typed:  # an integral float is written as an int then
        return _pieces(np, walk, column)
    values = np.frombuffer(array.array("d", column), np.float64)
    cells = le8(np, values)
    nan = np.isnan(values)
    if nan.any():  # every NaN is one NaN
        cells = cells.copy()
        cells[nan] = np.frombuffer(NAN_BYTES, np.uint8)
    return Column(9, tagged(np, b"F", cells))


def _complex_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    values = np.fromiter(column, np.complex128, len(column)).view(np.float64)
    cells = le8(np, values)
    nan = np.isnan(values)
    if nan.any():
        cells = cells.copy()
        cells[nan] = np.frombuffer(NAN_BYTES, np.uint8)
    return Column(17, tagged(np, b"C", cells.reshape(-1, 16)))


def _str_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    walk.met_all(column)
    everything = "".join(column)
    if everything.isascii():  # a char a byte: all encoded in one call
        text = Varying(np, column, b"S")
        text.text = True
        text.everything = everything.encode("ascii")
        return text
    data = list(map(str.encode, column, repeat("utf-8"), repeat("surrogatepass")))
    return Varying(np, data, b"S")


def _bytes_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    walk.met_all(column)
    return Varying(np, column, b"Y")


def _bytearray_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    walk.met_all(column)
    return Varying(np, column, b"A")


SCALAR_COLUMNS = {
    _NONE: _none_column,
    _BOOL: _bool_column,
    _INT: _int_column,
    _FLOAT: _float_column,
    _COMPLEX: _complex_column,
    _STR: _str_column,
    _BYTES: _bytes_column,
    _BYTEARRAY: _bytearray_column,
}
