"""Restoring cells by their recorded digests, and loading values only when a cell needs them.

In a whole-notebook run most cells hit, and unpickling everything they bound
would cost as much as the values are large. So a hit of an entry made for it
(:func:`recorded_meta` says which) puts a :class:`~nbcache.keys.standin.StandIn`
in the namespace for each value, replays the output kept in the signed header
and loads nothing. Later keys hash the recorded digests. Before a cell body
runs, :func:`needed` says which stand-ins it can reach (the names it reads, and
the globals of the notebook functions and classes it reads, transitively), and
:func:`load` swaps them for their values; a cell that might reach any name
(``eval``, ``globals()``, a line magic, IPython's ``_`` and ``Out``) loads all.

A module a cell imported, or a library's function or class it bound (``import
numpy as np``, ``from scipy.stats import norm``), is not imported on a hit either:
its stand-in says where it is imported from and hashes as the value would. Before
a cell runs that may reach a library (:func:`reaches_libraries`), every module
restored cells imported is, in the notebook's order (:mod:`nbcache.run.lazyimports`):
an import may register into another library, which a cell reaches without naming it.

Entries that bind notebook code or modules beside the notebook, that changed the
random generators or other outside state, that wrote files, or that keep values
sharing an object with another (``inner = d["k"]``), are never restored this way:
code is hashed by what it reaches now, and outside state must be right before
the next cell runs. Such an entry still leaves its library modules to stand-ins,
unless the cell's imports themselves changed outside state (:func:`header_records`).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..keys.classes import describe
from ..keys.code import is_code
from ..keys.scope import CellCode, names_in_string
from ..keys.standin import StandIn
from .cellrun import ModuleRef, result_of
from .lazyimports import importable, imported_in_order, placed, resolve, seen_elsewhere
from .modstate import local
from .output import NO_RESULT
from .reach import imports_within, names_used, reaches_anything, source_scan
from .records import CellEntry, HeaderRecord, RecordedVar, header_meta

__all__ = [
    "MAX_OUTPUT_BYTES",
    "header_records",
    "needed",
    "pending",
    "reaches_libraries",
    "recorded_imports",
    "recorded_meta",
    "restorable",
    "stand_ins",
    "swap_in",
]

# Outputs go in the signed header, which is read on every lookup: a few pictures fit,
# a cell that printed a megabyte keeps its output in the pickle and restores in full.
MAX_OUTPUT_BYTES = 512 << 10


def recorded_meta(entry: CellEntry) -> HeaderRecord | None:
    """What the signed header keeps so a hit can restore without loading any value, or
    None when this entry must restore in full (see the module docstring)."""
    if entry.effects or entry.wrote:
        return None  # the outside state and the files must be right before the next cell
    if entry.shared:
        return None  # values that share an object come back sharing it: from one pickle
    plain = set(entry.plain)
    variables = {}
    for name, value in entry.vars.items():
        recorded = entry.digests.get(name)
        if recorded is None or name not in plain:
            return None
        if not _data(value):
            imported = importable(recorded, value)
            if imported is None:
                return None  # notebook code, a module beside the notebook: in full
            variables[name] = imported
            continue
        reads = tuple(sorted(names_in_string(value))) if type(value) is str else None
        variables[name] = RecordedVar(recorded, describe(value), reads)
    try:
        text = json.dumps(entry.outputs)
    except (TypeError, ValueError):
        return None
    if len(text) > MAX_OUTPUT_BYTES:
        return None
    result = entry.result
    return HeaderRecord(
        vars=variables,
        deleted=list(entry.deleted),
        outputs=json.loads(text),
        result=result is not None and result is not NO_RESULT,
    )


def header_records(
    entry: CellEntry, import_changed: Mapping[str, tuple[Any, Any]], code: CellCode
) -> dict[str, Any]:
    """What an entry's signed header keeps for a lazy run (``header_meta``): the record
    it restores from (:func:`recorded_meta`), and, for an entry restored in full, the
    modules it binds that may be imported later (:func:`recorded_imports`); beside either,
    the modules the cell's imports loaded (``imported_in_order``). A cell whose imports
    changed state set before them that another cell can see (``import_changed``: see
    ``seen_elsewhere``) has its modules imported when it restores, as a plain run had
    that state from then on."""
    record = recorded_meta(entry)
    imported = imported_in_order(code)
    if not seen_elsewhere(import_changed):
        return header_meta(record, recorded_imports(entry) if record is None else {}, imported)
    return header_meta(record if record is None or not record.imports() else None, {}, imported)


def recorded_imports(entry: CellEntry) -> dict[str, RecordedVar]:
    """The records of the library modules, functions and classes ``entry`` binds that a
    stand-in can import later (kept in the header of an entry restored in full)."""
    out = {}
    for name, value in entry.vars.items():
        recorded = entry.digests.get(name)
        if recorded is not None and not _data(value) and name in entry.plain:
            imported = importable(recorded, value)
            if imported is not None:
                out[name] = imported
    return out


def restorable(meta: Mapping[str, Any]) -> HeaderRecord | None:
    """The record of an entry's signed metadata ``meta`` when it restores a hit by
    stand-ins: well formed, and a result it shows where it came (a ``;`` on the miss
    hid it: showing it needs the value); else None."""
    recorded = HeaderRecord.of_meta(meta)
    if recorded is None:
        return None
    shown = any(isinstance(e, list) and e[:1] == ["result"] for e in recorded.outputs)
    return recorded if shown or not recorded.result else None


def _data(value: Any) -> bool:
    """Not a module, class or function (a library's, whose attributes a cell may set, and
    which cost nothing to load): the values worth standing in for."""
    code_like = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    return not isinstance(value, (ModuleRef, *code_like))


def stand_ins(key: str, recorded: HeaderRecord, namespace: dict[str, Any]) -> StandIn | None:
    """Put the stand-ins of a hit restored from its header into ``namespace``; the
    stand-in of its result (None when it has none). A module, function or class whose
    module is loaded already is bound at once, as is one whose package changed since
    (imported now, as a restore in full would)."""
    for name, rec in recorded.vars.items():
        if rec.imports is not None:
            namespace[name] = placed(key, name, rec)
            continue
        reads = rec.string_reads or ()
        namespace[name] = StandIn(key, name, rec.digest, rec.described, reads)
    for name in recorded.deleted:
        namespace.pop(name, None)
    return StandIn(key, "", "", {}) if recorded.result else None


def pending(namespace: Mapping[str, Any]) -> bool:
    """Whether any stand-in is left (IPython's ``Out`` included)."""
    return any(True for _ in _all_stand_ins(namespace))


def _all_stand_ins(namespace: Mapping[str, Any]) -> Iterator[tuple[str, StandIn]]:
    for name, value in list(namespace.items()):
        if type(value) is StandIn:
            yield name, value
    out = namespace.get("Out")
    if isinstance(out, dict):
        for number, value in list(out.items()):
            if type(value) is StandIn:
                yield f"Out[{number}]", value


def needed(code: CellCode | None, namespace: Mapping[str, Any]) -> list[StandIn] | None:
    """The stand-ins a run of ``code`` can reach; None: any of them (load all).
    ``code`` None is a cell nbcache cannot read."""
    scanned = source_scan(code.source) if code is not None else None
    if code is None or scanned is None or reaches_anything(scanned[0]):
        return None
    found: dict[int, StandIn] = {}
    todo = [*code.reads, *scanned[1]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        value = namespace.get(name)
        if type(value) is StandIn:
            found[id(value)] = value
            todo.extend(value.string_reads)  # a query or formula it holds names these
            continue
        if _beside_reading_main(value):
            return None  # a helper module may read any name through ``__main__``
        if type(value) is str:
            todo.extend(names_in_string(value))
            continue
        code_values = _code_within(value)
        if code_values is None:
            return None  # too big to look through: load all
        for code_value in code_values:
            names = names_used(code_value)
            if reaches_anything(names):
                return None
            todo.extend(names)
    return list(found.values())


# How code beside the notebook reaches its namespace without naming what it reads.
_MAIN_WAYS = ("__main__", "_getframe", "f_globals", "f_back", "currentframe", "inspect.stack")
_SOURCES: dict[tuple[str, int], bool] = {}  # (file, mtime) -> it mentions one of those


def _beside_reading_main(value: Any) -> bool:
    """Whether ``value`` is a module beside the notebook, or code from one, while some
    module beside the notebook mentions a way to ``__main__``'s namespace in its source:
    what such code reads is not known from the cell, so everything is loaded."""
    if isinstance(value, types.ModuleType):
        module: Any = value
    elif callable(value) or isinstance(value, type):
        module = sys.modules.get(getattr(value, "__module__", None) or "")
    else:
        return False
    if module is None or module.__name__ == "__main__" or not local(module):
        return False
    return any(_reads_main(m) for m in list(sys.modules.values()) if _is_local(m))


def _is_local(module: Any) -> bool:
    return isinstance(module, types.ModuleType) and module.__name__ != "__main__" and local(module)


def _reads_main(module: types.ModuleType) -> bool:
    path = getattr(module, "__file__", "") or ""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return True  # its source cannot be read: it may
    known = _SOURCES.get((path, mtime))
    if known is None:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = "__main__"
        known = _SOURCES[(path, mtime)] = any(way in text for way in _MAIN_WAYS)
    return known


_LEAVES = (int, float, complex, str, bytes, bool, type(None), range)
_WALK_LIMIT = 10_000


def _code_within(value: Any) -> list[Any] | None:
    """The notebook functions and classes ``value`` is or holds (a dict of callbacks, an
    instance of a notebook class, a pipeline holding a notebook function), found by a
    walk of at most ``_WALK_LIMIT`` objects; None beyond that."""
    found: list[Any] = []
    seen: set[int] = set()
    todo = [value]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, _LEAVES) or type(obj) is StandIn:
            continue
        seen.add(id(obj))
        if len(seen) > _WALK_LIMIT:
            return None
        if isinstance(obj, types.ModuleType):
            continue
        if is_code(obj):
            found.append(obj)
            continue  # what it reads is found from its code, not its globals
        if isinstance(obj, type) or callable(getattr(obj, "__array__", None)):
            continue  # installed classes, and arrays (their buffers hold no code)
        todo.append(type(obj))
        todo.extend(gc.get_referents(obj))
    return found


# What a stand-in of plain data says its value is (``describe``): loading it imports nothing.
_PLAIN_TYPES = frozenset(
    {"int", "float", "complex", "str", "bytes", "bool", "NoneType", "range"}
    | {"list", "tuple", "dict", "set", "frozenset"}
)


def reaches_libraries(code: CellCode | None, namespace: Mapping[str, Any]) -> bool:
    """Whether a run of ``code`` may reach a library, into which an import a lazy run
    left waiting may have registered (an accessor, a projection, a setting): a module, a
    library's function, class or object, an import of its own or in a notebook function
    it calls, or anything not known (True then). False only for a cell whose names,
    followed through the notebook functions it reads, reach plain data (numbers,
    strings, containers of them) and notebook functions: no registration can show there.
    """
    if code is None or code.uses_shell or "import" in code.source:
        return True
    scanned = source_scan(code.source)
    if scanned is None or reaches_anything(scanned[0]):
        return True
    names: list[str] = [*scanned[0], *scanned[1], *code.string_reads]
    values: list[Any] = []
    seen: set[str] = set()
    visited: set[int] = set()
    while names or values:
        if names:
            name = names.pop()
            if name not in seen:
                seen.add(name)
                if name == "__import__":
                    return True
                if name in namespace:  # else a builtin, or not bound yet
                    values.append(namespace[name])
            continue
        value = values.pop()
        if id(value) in visited:
            continue
        visited.add(id(value))
        kind = type(value)
        if len(visited) > _WALK_LIMIT:
            return True
        if kind in _LEAVES:
            continue
        if kind is StandIn:
            if value.imports or value.described.get("type") not in _PLAIN_TYPES:
                return True
            names.extend(value.string_reads)
        elif kind in (list, tuple, set, frozenset):
            values.extend(value)
        elif kind is dict:
            values.extend(value)
            values.extend(value.values())
        elif kind is types.FunctionType and is_code(value):
            used = names_used(value)
            if imports_within(value.__code__) or reaches_anything(used):
                return True  # an import, or `eval`, `globals()`: anything (as `needed`)
            names.extend(used)
            values.extend(_function_values(value))
        else:
            return True
    return False


def _function_values(fn: types.FunctionType) -> list[Any]:
    """What a function holds besides its code: defaults and the cells it closes over."""
    out: list[Any] = [*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()]
    for cell in fn.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            continue
    return out


def swap_in(
    chosen: list[StandIn] | None,
    namespace: dict[str, Any],
    load: Callable[[str], CellEntry | None],
) -> list[str]:
    """Replace the ``chosen`` stand-ins (None: all) with their values, loading each entry
    once through ``load(key) -> CellEntry | None``; the names loaded. A stand-in whose entry
    is gone stays, and a warning names it."""
    wanted = None if chosen is None else {id(r) for r in chosen}
    by_key: dict[str, list[tuple[str, StandIn]]] = {}
    for where, rec in _all_stand_ins(namespace):
        if wanted is None or id(rec) in wanted:
            by_key.setdefault(rec.key, []).append((where, rec))
    # a result is reached through the names IPython keeps for it, so all of them change
    if wanted is not None:
        keys = set(by_key)
        for where, rec in _all_stand_ins(namespace):
            if rec.key in keys and not rec.name and (where, rec) not in by_key[rec.key]:
                by_key[rec.key].append((where, rec))
    loaded: list[str] = []
    for key, places in list(by_key.items()):
        imported = [(where, rec) for where, rec in places if rec.imports]
        for where, rec in imported:
            namespace[where] = resolve(rec.imports)  # as the plain run's import did
            loaded.append(where)
        places = [place for place in places if not place[1].imports]
        if not places:
            continue
        entry = load(key)
        if entry is None:
            continue
        for where, rec in places:
            value = result_of(entry) if not rec.name else entry.vars.get(rec.name, rec)
            if where.startswith("Out["):
                namespace["Out"][int(where[4:-1])] = value
            else:
                namespace[where] = value
                rec.loaded = () if rec.name else (value,)
            loaded.append(where)
    return loaded
