"""Hashing rules for builtin containers: lists, tuples, dicts (ordered), sets (order-free).

The hot path: a container of plain scalars is hashed in one call, without a
frame of the walk; only parts that are objects are yielded.  Subclasses of
list, tuple and dict go through the reduce protocol (``rules/objects.py``),
which sees their class and what a constructor call does not show (a
``defaultdict``'s factory); set subclasses get a rule here, since their
reduction lists the items in hash-seed order.
"""

from __future__ import annotations

import types
from typing import Any

from ..classes import Matcher, instance_dict
from ..node import ATOMS, BULK_ITEMS, Node, Parts, Rule, Unfed, bulk_atoms

__all__ = ["RULES", "items_parts"]


def _sequence_rule(n: Node, value: list[Any] | tuple[Any, ...]) -> Parts | None:
    n.tag(b"list" if type(value) is list else b"tuple")
    n.count(len(value))
    if len(value) >= BULK_ITEMS and bulk_atoms(n, value):
        return None  # a long run of one scalar type, encoded in C
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


def _dict_rule(n: Node, value: dict[Any, Any]) -> Parts | None:
    # Ordered: list(d), iteration and repr show insertion order, and a cell's
    # result can follow it.  Two dicts that differ only in order differ here.
    n.tag(b"dict")
    n.count(len(value))
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
