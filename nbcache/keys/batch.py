"""A long container's items encoded at once, in C: scalars, and small containers of scalars.

A list of a million records is a million small objects (``keys/hashing.py``);
one Python step per item is twenty times pickle's time.  Here a container's
items are sorted by type in C-level passes (``map``, ``itertools``, numpy), each
type is encoded as a column (``keys/columns.py``), and the small tuples, lists
and dicts among them that hold only scalars (leaves) are encoded together,
leaves of one shape as rows of a 2-D array; a small leaf's encoding is written
in place (``node.Inline``), a larger one's digest.  What is left, objects and
containers that hold objects, stays with the walk: a hole of 16 bytes for each,
which the rule fills with the part's digest.  A part the walk hashed already is
taken from its memo, so shared parts are still hashed once.

The bytes are exactly those that encoding item by item writes, so no digest
changes.  Anything the columns cannot say as item by item would (a float when
untyped, an int that names a part, a very long string) goes item by item
instead.  numpy does the column work; without numpy nothing here runs.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from itertools import chain, pairwise, repeat
from typing import Any

import xxhash

from .columns import (
    CODES,
    DICT,
    LAST_SCALAR,
    LIST,
    OTHER,
    SCALAR_COLUMNS,
    TUPLE,
    Column,
    ItemByItem,
    Varying,
    le8,
    place_rows,
    select,
    tagged,
    type_codes,
)
from .node import INLINE_BYTES, INLINE_ITEMS, Walker, numpy

__all__ = ["LEAF_ITEMS", "Layout", "encode_items"]

# A tuple, list or dict with fewer items than this is looked into, for a leaf.
# Bounded, so a part that many parents hold costs each of them little.
LEAF_ITEMS = INLINE_ITEMS
_TAGS = {TUPLE: b"tuple\x00", LIST: b"list\x00", DICT: b"dict\x00"}


class Layout:
    """A container's items encoded into ``buf``; ``holes`` are (item index, byte offset)
    pairs where the walk puts a part's 16-byte digest."""

    __slots__ = ("buf", "holes")

    def __init__(self, buf: bytearray, holes: list[tuple[int, int]]) -> None:
        self.buf = buf
        self.holes = holes


def encode_items(
    walk: Walker, items: Sequence[Any], types: list[type] | None = None
) -> Layout | None:
    """``items`` encoded as one encode or part per item would write them, or None.

    None means: go item by item (numpy missing, or something only the walk can say).
    ``types``, if given, is ``list(map(type, items))``.
    """
    np = numpy()
    if np is None:
        return None
    try:
        buf, _, holes = _encode(np, walk, items, True, types)
    except ItemByItem:
        return None
    return Layout(buf, holes)


def _encode(
    np: Any, walk: Walker, items: Sequence[Any], holes_allowed: bool, types: list[type] | None
) -> tuple[bytearray, Any, list[tuple[int, int]]]:
    """(the bytes, each item's offset in them with the end last, the holes)."""
    columns, widths = _measure(np, walk, items, types, holes_allowed, 0)
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(widths, out=offsets[1:])
    buf = bytearray(int(offsets[-1]))
    holes = _fill(np, columns, np.frombuffer(buf, np.uint8), offsets)
    return buf, offsets, holes


def _measure(
    np: Any, walk: Walker, items: Sequence[Any], codes: Any, holes_allowed: bool, period: int
) -> tuple[list[tuple[Any, Column]], Any]:
    """The items sorted into columns by type, and each item's width.

    With ``period`` k, when item i has the type of item i mod k throughout (rows
    of k fields each), the columns are slices: no sorting.
    """
    count = len(items)
    widths = np.zeros(count, np.int64)
    columns = []
    if (
        period
        and codes is not None
        and not isinstance(codes, list)
        and count % period == 0
        and (codes.reshape(-1, period) == codes[:period]).all()
    ):
        groups = [(np.arange(j, count, period), items[j::period]) for j in range(period)]
        kinds = codes[:period].tolist()
    else:
        kinds, groups = _by_type(np, items, codes)
    for kind, (where, column) in zip(kinds, groups, strict=True):
        if kind > LAST_SCALAR and not holes_allowed:
            raise ItemByItem
        filler = _COLUMNS[kind](np, walk, column)
        widths[where] = filler.widths
        columns.append((where, filler))
    return columns, widths


_FEW = 64  # this many items of other types among one type's are found one by one


def _by_type(np: Any, items: Sequence[Any], codes: Any) -> tuple[list[int], list[Any]]:
    """(codes, [(positions, items)]): the items grouped by their type's code.

    ``codes`` is an array of codes, or a list of the items' types, or None.
    """
    count = len(items)
    if codes is None or isinstance(codes, list):
        types = list(map(type, items)) if codes is None else codes
        counts = {kind: types.count(kind) for kind in set(types)}
        if len(counts) == 1:
            return [CODES[types[0]]], [(np.arange(count), list(items))]
        major = max(counts, key=counts.__getitem__)
        if count - counts[major] <= _FEW:  # a run with a few others: slices of it
            return _runs(np, items, types, counts, major)
        periodic = _periodic(np, items, types)
        if periodic is not None:
            return periodic
        codes = np.fromiter(map(CODES.__getitem__, types), np.int8, count)
    kinds = np.flatnonzero(np.bincount(codes)).tolist()  # codes are small and not negative
    if len(kinds) == 1:
        return kinds, [(np.arange(count), list(items))]
    objects = np.fromiter(items, object, count)
    wheres = [np.flatnonzero(codes == kind) for kind in kinds]
    return kinds, [(where, objects[where].tolist()) for where in wheres]


def _periodic(
    np: Any, items: Sequence[Any], types: list[type]
) -> tuple[list[int], list[Any]] | None:
    """(codes, groups) as ``_by_type`` gives them, as slices, when item i has the type of
    item i mod k (k up to 4: a dict's keys and values in turn, records laid flat); else None.
    """
    count = len(types)
    for period in range(2, 5):
        if count < 4 * period:
            return None
        codes, groups = [], []
        for j in range(period):
            lane = types[j::period]
            if lane.count(lane[0]) != len(lane):
                break
            codes.append(CODES[lane[0]])
            groups.append((np.arange(j, count, period), list(items[j::period])))
        else:
            return codes, groups
    return None


def _runs(
    np: Any, items: Sequence[Any], types: list[type], counts: dict[type, int], major: type
) -> tuple[list[int], list[Any]]:
    kinds, groups, others = [], [], []
    for kind, many in counts.items():
        if kind is major:
            continue
        at = -1
        where = []
        for _ in range(many):
            at = types.index(kind, at + 1)
            where.append(at)
        kinds.append(CODES[kind])
        groups.append((np.array(where, np.int64), [items[i] for i in where]))
        others += where
    others.sort()
    bounds = [-1, *others, len(items)]
    column = list(chain.from_iterable(items[a + 1 : b] for a, b in pairwise(bounds)))
    kinds.append(CODES[major])
    groups.append((np.delete(np.arange(len(items)), others), column))
    return kinds, groups


def _fill(
    np: Any, columns: list[tuple[Any, Column]], out: Any, starts: Any
) -> list[tuple[int, int]]:
    """Each column's bytes into ``out`` at its items' ``starts``; the holes left."""
    holes: list[tuple[int, int]] = []
    for where, filler in columns:
        filler.fill(np, out, starts[where])
        if filler.holes is not None:
            at = where[filler.holes]
            holes += zip(at.tolist(), starts[at].tolist(), strict=True)
    holes.sort()
    return holes


def _object_column(np: Any, walk: Walker, column: list[Any]) -> Column:
    holes = Column(16)
    holes.holes = np.arange(len(column))
    return holes


def _container_column(kind: int) -> Any:
    def column_of(np: Any, walk: Walker, column: list[Any]) -> Column:
        return _Leaves(np, walk, column, kind)

    return column_of


class _Leaves(Column):
    """Tuples, lists or dicts of one type: each a small leaf's encoding, a digest, or a hole.

    One already hashed comes from the walk's memo.  One with few items, all
    scalars, is a leaf: all leaves are encoded together, a small one's encoding
    written in place (``node.Inline``), a larger one hashed, a C call each, and
    remembered, so its other holders do not hash it again.  A small leaf this
    container holds twice is encoded twice: remembering a million small leaves
    costs more than encoding the few repeated ones again, and the work stays
    bounded by the references.  The rest are holes.
    """

    def __init__(self, np: Any, walk: Walker, column: list[Any], kind: int) -> None:
        count = len(column)
        memo = walk.memo
        known = list(map(memo.get, map(id, column))) if memo else []
        if known and known.count(None) < count:
            is_known = np.fromiter(map(operator.is_not, known, repeat(None)), bool, count)
        else:
            is_known = np.zeros(count, bool)
        lengths = np.fromiter(map(len, column), np.int64, count)
        small = (lengths < LEAF_ITEMS) & ~is_known
        digests = np.zeros((count, 16), np.uint8)
        if is_known.any():
            found = [d for d in known if d is not None]
            digests[is_known] = np.frombuffer(b"".join(found), np.uint8).reshape(-1, 16)
        leaf = np.zeros(count, bool)
        self.inline = np.zeros(count, bool)
        self.groups: list[tuple[Any, Any]] = []  # (where, rows): small leaves' encodings
        widths = np.full(count, 16, np.int64)
        if small.any():
            every = small.all()
            at = np.arange(count) if every else np.flatnonzero(small)
            some = column if every else select(column, small)
            made = _encode_leaves(np, walk, some, kind, lengths if every else lengths[small])
            leaf[at], self.inline[at] = made.leaf, made.inline
            digests[at] = made.digests
            widths[at] = made.widths
            self.groups = [(at[where], rows) for where, rows in made.groups]
        super().__init__(widths, digests)
        holes = ~(leaf | is_known)
        if holes.any():
            self.holes = np.flatnonzero(holes)

    def fill(self, np: Any, out: Any, starts: Any) -> None:
        if not self.inline.all():
            hashed = np.flatnonzero(~self.inline)
            place_rows(np, out, starts[hashed], self.cells[hashed])
        for where, rows in self.groups:
            place_rows(np, out, starts[where], rows)


class _Encoded:
    """Leaves encoded: which are leaves, and of those which are written in place
    (their rows, by width), which hashed (their digests)."""

    __slots__ = ("digests", "groups", "inline", "leaf", "widths")

    def __init__(self, np: Any, count: int) -> None:
        self.leaf = np.zeros(count, bool)
        self.inline = np.zeros(count, bool)
        self.widths = np.full(count, 16, np.int64)
        self.digests = np.zeros((count, 16), np.uint8)
        self.groups: list[tuple[Any, Any]] = []

    def add(self, np: Any, walk: Walker, at: Any, rows: Any, holders: list[Any]) -> None:
        """Leaves ``holders``, at ``at``, whose encodings are ``rows`` (all as wide)."""
        self.leaf[at] = True
        width = rows.shape[1]
        if width <= INLINE_BYTES:
            self.inline[at] = True
            self.widths[at] = width
            self.groups.append((at, rows))
            return
        made = b"".join(map(xxhash.xxh3_128_digest, rows))
        self.digests[at] = np.frombuffer(made, np.uint8).reshape(-1, 16)
        walk.remember(holders, [made[i : i + 16] for i in range(0, len(made), 16)])


def _encode_leaves(np: Any, walk: Walker, column: list[Any], kind: int, sizes: Any) -> _Encoded:
    """Each container's encoding, if it is a leaf; the others are left to the walk."""
    count = len(column)
    out = _Encoded(np, count)
    rows = count and sizes.min() == sizes.max()  # all as long: perhaps rows
    if rows and _row_encodings(np, walk, column, kind, _fields(column, kind, int(sizes[0])), out):
        return out
    if kind == DICT:
        flat = list(chain.from_iterable(chain.from_iterable(map(dict.items, column))))
        spans = sizes * 2
    else:
        flat = list(chain.from_iterable(column))
        spans = sizes
    ends = np.cumsum(spans)
    starts = ends - spans
    codes = type_codes(np, flat)
    objects = np.concatenate(([0], np.cumsum(codes > LAST_SCALAR)))
    leaves = objects[ends] == objects[starts]
    where = np.arange(count)
    if not leaves.all():  # containers holding objects: the walk's
        keep = np.repeat(leaves, spans)
        column = select(column, leaves)
        where = where[leaves]
        flat = select(flat, keep)
        codes, sizes, spans = codes[keep], sizes[leaves], spans[leaves]
        ends = np.cumsum(spans)
        starts = ends - spans
    if not len(column):
        return out
    walk.entered(column)
    period = int(spans[0]) if spans.min() == spans.max() else 0
    columns, widths = _measure(np, walk, flat, codes, False, period)
    offsets = np.zeros(len(flat) + 1, np.int64)
    np.cumsum(widths, out=offsets[1:])
    tag = _TAGS[kind]
    head = len(tag) + 8
    begin, end = offsets[starts], offsets[ends]
    lengths = end - begin + head
    # Each leaf's bytes one after another, the shortest first: leaves of one
    # length then lie side by side, rows of one array.
    order = np.argsort(lengths, kind="stable")
    into = np.zeros(len(column) + 1, np.int64)
    np.cumsum(lengths[order], out=into[1:])
    at = np.empty(len(column), np.int64)
    at[order] = into[:-1]
    whole = np.zeros(int(into[-1]), np.uint8)
    place_rows(np, whole, at, tagged(np, tag, le8(np, sizes)))
    # Each item where its leaf's bytes begin, after the header, plus its place in them.
    _fill(np, columns, whole, np.repeat(at + head - begin, spans) + offsets[:-1])
    ordered = lengths[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    for first, stop in pairwise([0, *cuts.tolist(), len(ordered)]):
        size = int(ordered[first])
        rows = whole[into[first] : into[stop]].reshape(stop - first, size)
        mine = order[first:stop]
        holders = [column[i] for i in mine.tolist()] if size > INLINE_BYTES else []
        out.add(np, walk, where[mine], rows, holders)
    return out


def _fields(column: list[Any], kind: int, size: int) -> list[list[Any]]:
    """The items of containers all ``size`` long, as columns: a dict's keys, then its values."""
    if kind == DICT:
        keys = list(chain.from_iterable(column))
        values = list(chain.from_iterable(map(dict.values, column)))
        if size == 1:
            return [keys, values]
        return [field for j in range(size) for field in (keys[j::size], values[j::size])]
    flat = list(chain.from_iterable(column))
    return [flat[j::size] for j in range(size)] if size > 1 else [flat] * size


def _row_encodings(
    np: Any, walk: Walker, column: list[Any], kind: int, fields: list[Any], out: _Encoded
) -> bool:
    """Encode leaves that are rows into ``out``: a field each, every field of one scalar
    type throughout, at most one of them of varying width (a str).  False if not rows.

    Rows whose varying field is as long lie at the same offsets: each length is
    one 2-D array, filled a field at a time.
    """
    fillers = _row_fields(np, walk, fields)
    if fillers is None:
        return False
    varying = [filler for filler in fillers if isinstance(filler, Varying)]
    count = len(column)
    order = lengths = None
    cuts = [0, count]
    text = None
    if varying:
        lengths = varying[0].lengths
        order = np.argsort(lengths, kind="stable")
        lengths = lengths[order]
        cuts = [0, *(np.flatnonzero(np.diff(lengths)) + 1).tolist(), count]
        if len(cuts) > 66:
            return False  # many lengths: each leaf placed on its own
        # Every str's bytes one after another, and where each begins: a group of
        # one length is read out of them as rows, in one call.
        joined = np.frombuffer(varying[0].joined(varying[0].data), np.uint8)
        text = (joined, np.cumsum(varying[0].lengths) - varying[0].lengths)
    walk.entered(column)
    size = len(fields) // 2 if kind == DICT else len(fields)
    head = np.frombuffer(_TAGS[kind] + struct.pack("<q", size), np.uint8)
    for first, stop in pairwise(cuts):
        at = np.arange(count) if order is None else order[first:stop]
        rows = slice(None) if order is None else at
        extra = 0 if lengths is None else int(lengths[first])
        block = _row_block(np, head, fillers, rows, stop - first, extra, text)
        big = block.shape[1] > INLINE_BYTES
        out.add(np, walk, at, block, [column[i] for i in at.tolist()] if big else [])
    return True


def _row_fields(np: Any, walk: Walker, fields: list[Any]) -> list[Column] | None:
    """A column for each field, if each is of one scalar type and at most one varies."""
    kinds = []
    for field in fields:
        first = type(field[0]) if field else type(None)
        code = CODES[first] if list(map(type, field)).count(first) == len(field) else OTHER
        if code > LAST_SCALAR:
            return None
        kinds.append(code)
    fillers = [_COLUMNS[code](np, walk, field) for code, field in zip(kinds, fields, strict=True)]
    if sum(isinstance(filler, Varying) for filler in fillers) > 1:
        return None
    return fillers


def _row_block(
    np: Any, head: Any, fillers: list[Column], rows: Any, count: int, extra: int, text: Any
) -> Any:
    """The encodings of ``count`` rows whose varying field is ``extra`` bytes long, as
    rows of one array."""
    width = len(head) + sum(
        filler.head + extra if isinstance(filler, Varying) else filler.widths for filler in fillers
    )
    block = np.empty((count, width), np.uint8)
    block[:, : len(head)] = head
    at = len(head)
    for filler in fillers:
        if filler.cells is not None:
            step = filler.head if isinstance(filler, Varying) else filler.widths
            block[:, at : at + step] = filler.cells[rows]
            at += step
        if isinstance(filler, Varying) and extra:
            joined, begins = text
            block[:, at : at + extra] = _windows(np, joined, extra)[begins[rows]]
            at += extra
    return block


def _windows(np: Any, data: Any, width: int) -> Any:
    """Every ``width`` bytes of ``data`` from each offset on, as rows (a view, no copy)."""
    return np.lib.stride_tricks.as_strided(
        data, shape=(len(data) - width + 1, width), strides=(1, 1), writeable=False
    )


_COLUMNS = {
    **SCALAR_COLUMNS,
    TUPLE: _container_column(TUPLE),
    LIST: _container_column(LIST),
    DICT: _container_column(DICT),
    OTHER: _object_column,
}
