"""Hashing rules for builtin containers: lists, tuples, dicts (ordered), sets (order-free).

The hot path: a container of plain scalars is hashed in one call, without a
frame of the walk; only parts that are objects are yielded.  A long list,
tuple or dict is encoded many items at once (``keys/batch.py``): what is left
for the walk are holes, filled with the digests of the parts it yields.  Subclasses of
list, tuple and dict go through the reduce protocol (``rules/objects.py``),
which sees their class and what a constructor call does not show (a
``defaultdict``'s factory); set subclasses get a rule here, since their
reduction lists the items in hash-seed order.
"""

from __future__ import annotations

import types
from itertools import chain
from typing import Any

from ..batch import Layout, encode_items
from ..classes import Matcher, instance_dict
from ..node import ATOMS, BULK_ITEMS, Node, Parts, Rule, Step, Unfed, bulk_atoms

__all__ = ["BATCH_ITEMS", "RULES", "items_parts"]

# A list, tuple or dict this long, and this long for each type among its items, is
# encoded many items at once (``keys/batch.py``): shorter ones cost less item by
# item than numpy's fixed cost per call, which each type pays again.
BATCH_ITEMS = 256
_BATCH_PER_TYPE = 128
_FEW = 64  # this many items among a run of ints or floats are found one by one


def _sequence_rule(n: Node, value: list[Any] | tuple[Any, ...]) -> Parts | None:
    n.tag(b"list" if type(value) is list else b"tuple")
    n.count(len(value))
    if len(value) >= BULK_ITEMS:
        types = list(map(type, value))
        alike = types.count(types[0])
        if alike == len(value):
            if bulk_atoms(n, value, alike=True):
                return None  # a long run of one scalar type, encoded in C
            kinds = {types[0]}
        else:
            last = types[-1]
            if last is not types[0] and alike + types.count(last) == len(value):
                kinds = {types[0], last}  # two types, one at each end: no pass to find them
            else:
                kinds = set(types)
            others = _others(n, types, kinds, alike)
            if others is not None:
                return _runs(n, value, others)
        if len(value) >= max(BATCH_ITEMS, _BATCH_PER_TYPE * len(kinds)):
            layout = encode_items(n.walker, value, types)
            if layout is not None:
                return _filled(n, layout, value, _index_step)
    atoms = ATOMS
    for index, item in enumerate(value):
        encode = atoms.get(type(item))
        if encode is None:  # a part that is an object: a frame for the rest
            return _sequence_tail(n, value, index)
        encode(n, item)
    return None  # all scalars: done without a frame


def _sequence_tail(n: Node, value: list[Any] | tuple[Any, ...], start: int) -> Parts:
    atoms = ATOMS
    for index in range(start, len(value)):
        item = value[index]
        encode = atoms.get(type(item))
        if encode is None:
            yield item, index
        else:
            encode(n, item)


def _others(n: Node, types: list[type], kinds: set[type], first: int) -> list[int] | None:
    """Where the few items that break a run of ints (or floats) are, or None.

    ``first`` is how many items are of the first item's type.
    """
    if len(kinds) > 4:
        return None
    counts = {types[0]: first}
    rest = kinds - {types[0]}
    if len(rest) == 1:
        counts[next(iter(rest))] = len(types) - first
    else:
        counts.update((kind, types.count(kind)) for kind in rest)
    major = max(counts, key=counts.__getitem__)
    if len(types) - counts[major] > _FEW or not (major is int or (major is float and n.typed)):
        return None
    where = []
    for kind in kinds - {major}:
        at = -1
        for _ in range(counts[kind]):
            at = types.index(kind, at + 1)
            where.append(at)
    return sorted(where)


def _runs(n: Node, value: Any, others: list[int]) -> Parts:
    """The runs between ``others`` encoded in C, and the others one by one, in order."""
    atoms = ATOMS
    start = 0
    for at in [*others, len(value)]:
        if at > start:
            run = value[start:at]
            if len(run) < BULK_ITEMS or not bulk_atoms(n, run, alike=True):
                for item in run:
                    atoms[type(item)](n, item)
        if at < len(value):
            item = value[at]
            encode = atoms.get(type(item))
            if encode is None:
                yield item, at
            else:
                encode(n, item)
        start = at + 1


def _index_step(items: Any, index: int) -> tuple[Any, Step]:
    return items[index], index


def _pair_step(items: Any, index: int) -> tuple[Any, Step]:
    """Items are keys and values in turn: which one ``index`` is, and its path."""
    key = items[index - index % 2]
    return (key, ".<key>") if index % 2 == 0 else (items[index], (key,))


def _filled(n: Node, layout: Layout, items: Any, step: Any) -> Parts | None:
    if not layout.holes:
        n.add(layout.buf)
        return None
    return _fill_holes(n, layout, items, step)


def _fill_holes(n: Node, layout: Layout, items: Any, step: Any) -> Parts:
    buf = layout.buf
    for index, offset in layout.holes:
        part, where = step(items, index)
        buf[offset : offset + 16] = yield Unfed(part, where, place=index)
    n.add(buf)


def _dict_rule(n: Node, value: dict[Any, Any]) -> Parts | None:
    # Ordered: list(d), iteration and repr show insertion order, and a cell's
    # result can follow it.  Two dicts that differ only in order differ here.
    n.tag(b"dict")
    n.count(len(value))
    if len(value) >= BATCH_ITEMS // 2:
        flat = list(chain.from_iterable(value.items()))  # keys and values in turn
        types = list(map(type, flat))
        if len(flat) >= _BATCH_PER_TYPE * len(set(types)):
            layout = encode_items(n.walker, flat, types)
            if layout is not None:
                return _filled(n, layout, flat, _pair_step)
    atoms = ATOMS
    items = list(value.items())
    for index, (key, item) in enumerate(items):
        encode_key, encode_item = atoms.get(type(key)), atoms.get(type(item))
        if encode_key is None or encode_item is None:
            return _items_tail(n, items, index, attrs=False)
        encode_key(n, key)
        encode_item(n, item)
    return None


def _items_tail(n: Node, items: list[tuple[Any, Any]], start: int, attrs: bool) -> Parts:
    atoms = ATOMS
    for index in range(start, len(items)):
        key, item = items[index]
        encode = atoms.get(type(key))
        if encode is None:
            yield key, ".<key>"
        else:
            encode(n, key)
        encode = atoms.get(type(item))
        if encode is None:
            yield item, (f".{key}" if attrs and type(key) is str else (key,))
        else:
            encode(n, item)


def items_parts(n: Node, items: list[tuple[Any, Any]], attrs: bool) -> Parts:
    """Ordered pairs; with ``attrs`` a str key names ``.attr`` in error paths."""
    n.count(len(items))
    yield from _items_tail(n, items, 0, attrs)


def _mappingproxy_rule(n: Node, value: types.MappingProxyType[Any, Any]) -> Parts:
    # A read-only view of a dict (a dataclass field's metadata): its items, in order.
    n.tag(b"mappingproxy")
    yield from items_parts(n, list(value.items()), attrs=False)


def _unordered(n: Node, items: Any) -> Parts:
    parts: list[bytes] = []
    for item in list(items):
        part = n.atom_digest(item)
        parts.append(part if part is not None else (yield Unfed(item, ".<item>")))
    parts.sort()
    n.count(len(parts))
    for part in parts:
        n.add(part)


def _set_rule(n: Node, value: set[Any] | frozenset[Any]) -> Parts:
    n.tag(b"set" if type(value) is set else b"frozenset")
    yield from _unordered(n, value)


def _set_subclass_rule(n: Node, value: Any) -> Parts:
    # Not through reduce: a set subclass reduces to list(self), whose order
    # follows the hash seed.
    n.tag(b"set-subclass")
    yield type(value), ".__class__"
    yield from _unordered(n, value)
    state = instance_dict(value)
    n.tag(b"state")
    yield from items_parts(n, list((state or {}).items()), attrs=True)


RULES: tuple[tuple[Matcher, Rule], ...] = (
    (lambda c: c is list or c is tuple, _sequence_rule),
    (lambda c: c is dict, _dict_rule),
    (lambda c: c is set or c is frozenset, _set_rule),
    (lambda c: issubclass(c, (set, frozenset)), _set_subclass_rule),
    (lambda c: c is types.MappingProxyType, _mappingproxy_rule),
)
