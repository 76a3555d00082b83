"""Which other names a cell's entry keeps beside what the cell bound or changed: the
names that share memory or an object with them, so that a restore brings them back
sharing it, as the plain run left them (a write through one shows through the
other), and not each as it was before the cell.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

from ..keys.scope import is_shell_name

__all__ = ["WALK_BUDGET", "aliases", "mutable_parts", "sharers", "sharing"]

_ATOMS = (int, float, complex, str, bytes, bool, type(None))


def sharing(namespace: Mapping[str, Any], names: list[str]) -> list[str]:
    """Arrays elsewhere in the namespace that share memory with the arrays the cell bound
    or changed: a write through a view (``sub[0] = 99``) changes its base, and the other
    way round, so both are kept."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return []
    touched = [namespace[n] for n in names if isinstance(namespace[n], numpy.ndarray)]
    if not touched:
        return []
    return [
        name
        for name, value in namespace.items()
        if name not in names
        and isinstance(value, numpy.ndarray)
        and not is_shell_name(name)
        and any(numpy.may_share_memory(value, other) for other in touched)
    ]


def aliases(namespace: Mapping[str, Any], names: list[str]) -> list[str]:
    """Other names bound to the very objects the cell bound or changed (``b = a`` in an
    earlier cell, then ``a.append(2)``): kept in the same entry, they come back as one
    object, as they were, and not ``b`` as it was before the change."""
    kept = {id(namespace[n]) for n in names if not isinstance(namespace[n], _IMMUTABLE)}
    if not kept:
        return []
    return [
        name
        for name, value in namespace.items()
        if name not in names and not is_shell_name(name) and id(value) in kept
    ]


_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range)
WALK_BUDGET = 10_000  # objects an identity walk visits after a cell, as the hasher's
_LEAVES = ("numpy", "pandas")  # buffers: shared memory is found by ``sharing``


def _parts(value: Any) -> list[Any]:
    """The objects ``value`` holds directly, for an identity walk: container items and
    the attributes of instances of the notebook's classes; nothing of code, modules,
    arrays, or library objects (a logger would lead to every logger)."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, (type, types.ModuleType, types.FunctionType, types.MethodType)):
        return []
    if type(value).__module__ != "__main__":
        return []
    space = getattr(value, "__dict__", None)
    return list(space.values()) if isinstance(space, dict) else []


def mutable_parts(values: list[Any], budget: list[int]) -> dict[int, Any]:
    """The mutable objects reachable from ``values`` (themselves included), by id, until
    ``budget`` objects were visited."""
    seen: dict[int, Any] = {}
    todo = list(values)
    while todo and budget[0] > 0:
        value = todo.pop()
        if isinstance(value, _ATOMS) or id(value) in seen:
            continue
        budget[0] -= 1
        if not isinstance(value, (tuple, frozenset)):
            seen[id(value)] = value
        todo.extend(_parts(value))
    return seen


def sharers(namespace: Mapping[str, Any], names: list[str]) -> list[str]:
    """Other names whose values hold a mutable object that the values the cell bound or
    changed hold too (``inner = d["k"]`` and ``d``): kept in the same entry, they come
    back sharing it, so a later change through one shows through the other, as in the
    plain run. Walks at most :data:`WALK_BUDGET` objects."""
    budget = [WALK_BUDGET]
    touched = mutable_parts([namespace[n] for n in names], budget)
    touched = {k: v for k, v in touched.items() if not _code_like(v)}
    if not touched:
        return []
    out = []
    for name, value in namespace.items():
        if name in names or is_shell_name(name) or isinstance(value, _ATOMS) or budget[0] <= 0:
            continue
        if _code_like(value):
            continue
        if any(i in touched for i in mutable_parts([value], budget)):
            out.append(name)
    return out


def _code_like(value: Any) -> bool:
    return (
        isinstance(value, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType))
        or type(value).__module__.split(".")[0] in _LEAVES
    )
