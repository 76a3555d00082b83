"""Restoring cells by their recorded digests, and loading values only when a cell needs them.

In a whole-notebook run most cells hit, and unpickling everything they bound
would cost as much as the values are large. So a hit of an entry made for it
(:func:`recorded_meta` says which) puts a :class:`~nbcache.keys.recorded.Recorded`
in the namespace for each value, replays the output kept in the signed header
and loads nothing. Later keys hash the recorded digests. Before a cell body
runs, :func:`needed` says which stand-ins it can reach (the names it reads, and
the globals of the notebook functions and classes it reads, transitively), and
:func:`load` swaps them for their values; a cell that might reach any name
(``eval``, ``globals()``, a line magic, IPython's ``_`` and ``Out``) loads all.

A module a cell imported, or a library's function or class it bound (``import
numpy as np``, ``from scipy.stats import norm``), is not imported on a hit either:
its stand-in says where it is imported from, hashes as the value would (its digest
and, read as a global by notebook code, its module's fingerprint), and is imported
when a cell that runs can reach it. That digest holds while the file of the
library's package is the one it was made with (:func:`stamp`); otherwise, or
when the module is loaded already, the real value is bound at once.

Entries that bind notebook code or modules beside the notebook, that changed the
random generators or other outside state, that wrote files, or that keep values
sharing an object with another (``inner = d["k"]``), are never restored this way:
code is hashed by what it reaches now, and outside state must be right before
the next cell runs. Such an entry still leaves its library modules to stand-ins
(:func:`import_stand_ins`), unless the cell's imports themselves changed outside
state (:func:`header_records`).
"""

from __future__ import annotations

import ast
import gc
import importlib
import json
import os
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..keys.classes import describe
from ..keys.code import is_code
from ..keys.modules import is_local_module, locate_module, module_fingerprint
from ..keys.recorded import Recorded
from ..keys.scope import CellCode, is_shell_name, names_in_string
from .cellrun import ModuleRef, result_of
from .modstate import local
from .output import NO_RESULT
from .records import CellEntry, HeaderRecord, RecordedVar, modules_of_meta

__all__ = [
    "MAX_OUTPUT_BYTES",
    "header_records",
    "import_stand_ins",
    "needed",
    "pending",
    "recorded_imports",
    "recorded_meta",
    "restorable",
    "stamp",
    "stand_ins",
    "swap_in",
]

# Outputs go in the signed header, which is read on every lookup: a few pictures fit,
# a cell that printed a megabyte keeps its output in the pickle and restores in full.
MAX_OUTPUT_BYTES = 512 << 10

# Names through which code reaches the namespace without naming what it reads.
_DYNAMIC = frozenset(
    {"eval", "exec", "globals", "vars", "locals", "dir", "__main__", "modules", "user_ns"}
    # the environment an import not made yet would have set
    | {"environ", "getenv"}
)


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
            imported = _importable(recorded, value)
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
    entry: CellEntry, import_changed: Mapping[str, tuple[Any, Any]] | None = None
) -> tuple[HeaderRecord | None, dict[str, RecordedVar]]:
    """What an entry's signed header keeps for a lazy run: the record it restores from
    (:func:`recorded_meta`), and, for an entry restored in full, the modules it binds
    that may be imported later (:func:`recorded_imports`). A cell whose imports changed
    state set before them that another cell can see (``import_changed``, see
    :func:`_seen_elsewhere`) has its modules imported when it restores, as a plain run
    had that state from then on."""
    record = recorded_meta(entry)
    if not _seen_elsewhere(import_changed or {}):
        return record, recorded_imports(entry) if record is None else {}
    return (record if record is None or not record.imports() else None), {}


def _seen_elsewhere(changed: Mapping[str, tuple[Any, Any]]) -> bool:
    """Whether a state an import changed can show in a cell that does not use the library:
    any but the warnings filters a library adds for its own warnings or messages (only
    its code raises them, after it is imported) and the environment variables it sets
    for the native code it loads (a cell that names ``environ`` or ``getenv`` loads every
    stand-in first: :func:`needed`)."""
    for name, (before, after) in changed.items():
        if name == "os.environ":
            continue
        if name == "warnings" and _narrow_filters_added(before, after):
            continue
        return True
    return False


def _narrow_filters_added(before: Any, after: Any) -> bool:
    """Whether ``after`` is ``before`` with filters added in front, each one naming a
    message or a warning class of a library's own (not a builtin category)."""
    try:
        before, after = list(before), list(after)
        added = after[: len(after) - len(before)]
        if after[len(added) :] != before:
            return False
        for _action, message, category, _module, _line in added:
            pattern = getattr(message, "pattern", message) or ""
            if pattern in ("", ".*") and getattr(category, "__module__", "") == "builtins":
                return False
    except (TypeError, ValueError):
        return False
    return True


def recorded_imports(entry: CellEntry) -> dict[str, RecordedVar]:
    """The records of the library modules, functions and classes ``entry`` binds that a
    stand-in can import later (kept in the header of an entry restored in full)."""
    out = {}
    for name, value in entry.vars.items():
        recorded = entry.digests.get(name)
        if recorded is not None and not _data(value) and name in entry.plain:
            imported = _importable(recorded, value)
            if imported is not None:
                out[name] = imported
    return out


def import_stand_ins(key: str, meta: Mapping[str, Any]) -> dict[str, Recorded]:
    """For an entry restored in full: stand-ins for the modules, functions and classes it
    binds that are not loaded yet and whose package is as it was (see :func:`stand_ins`)."""
    out = {}
    for name, rec in modules_of_meta(meta).items():
        assert rec.imports is not None
        if rec.imports.partition(":")[0] in sys.modules or stamp(rec.imports) != rec.stamp:
            continue  # loaded already, or changed since: the restore imports it
        out[name] = _import_stand_in(key, name, rec)
    return out


def _import_stand_in(key: str, name: str, rec: RecordedVar) -> Recorded:
    assert rec.imports is not None
    return Recorded(
        key, name, rec.digest, rec.described, imports=rec.imports, fingerprint=rec.fingerprint
    )


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


def _importable(recorded: str, value: Any) -> RecordedVar | None:
    """The record of a module, or of an installed function or class, that a stand-in
    can import again and whose digest ``recorded`` is what importing it gives while its
    package's file stays as it is now; None for notebook code, code or modules beside
    the notebook, and what no name imports (a closure a library made)."""
    if isinstance(value, ModuleRef):
        module = sys.modules.get(value.name)
        if module is None or is_local_module(value.name):
            return None
        where, fingerprint, live = value.name, module_fingerprint(module), module
    else:
        found = _import_path(value)
        if found is None:
            return None
        where, fingerprint, live = found, "", value
    stamped = stamp(where)
    if stamped is None:
        return None  # a built-in or namespace package: nothing tells its version apart
    return RecordedVar(recorded, describe(live), None, where, fingerprint, stamped)


def _import_path(value: Any) -> str | None:
    """``module:qual.name`` that gives ``value`` again, for a library's function, class or
    a class's method (``ols = OLS.from_formula``); None for anything else."""
    module: Any
    qualname: Any
    if isinstance(value, types.MethodType):
        owner = value.__self__
        if not isinstance(owner, type):
            return None
        module, qualname = owner.__module__, f"{owner.__qualname__}.{value.__func__.__name__}"
    else:
        if isinstance(value, types.BuiltinFunctionType) and not isinstance(
            getattr(value, "__self__", None), (types.ModuleType, type(None))
        ):
            return None  # ``[].append``: bound to an object, not a name
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module not in sys.modules or is_local_module(module):
        return None
    where = f"{module}:{qualname}"
    try:
        found = _resolve(where, load=False)
    except Exception:  # noqa: BLE001 - a name that does not give it back: no stand-in
        return None
    same = found is value or (isinstance(value, types.MethodType) and found == value)
    return where if same else None


def _resolve(where: str, *, load: bool = True) -> Any:
    """The module or attribute ``where`` (``module`` or ``module:qual.name``) names,
    imported as a plain run's import does (``load`` False: only if loaded already)."""
    module_name, _, qualname = where.partition(":")
    found: Any = importlib.import_module(module_name) if load else sys.modules[module_name]
    for part in qualname.split(".") if qualname else ():
        found = getattr(found, part)
    return found


def stamp(where: str) -> tuple[Any, ...] | None:
    """The path, size, modification time and inode of the file of the package ``where``
    lives in, found without importing it: an upgrade or reinstall writes it anew, and its
    version is what the digest of each of its modules, functions and classes holds.
    None when it has no file (a built-in module, a namespace package)."""
    top = where.partition(":")[0].partition(".")[0]
    path = locate_module(top)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


def stand_ins(key: str, recorded: HeaderRecord, namespace: dict[str, Any]) -> Recorded | None:
    """Put the stand-ins of a hit restored from its header into ``namespace``; the
    stand-in of its result (None when it has none). A module, function or class whose
    module is loaded already is bound at once, as is one whose package changed since
    (imported now, as a restore in full would)."""
    for name, rec in recorded.vars.items():
        if rec.imports is not None:
            module_name = rec.imports.partition(":")[0]
            if module_name in sys.modules or stamp(rec.imports) != rec.stamp:
                namespace[name] = _resolve(rec.imports)
                continue
            namespace[name] = _import_stand_in(key, name, rec)
            continue
        reads = rec.string_reads or ()
        namespace[name] = Recorded(key, name, rec.digest, rec.described, reads)
    for name in recorded.deleted:
        namespace.pop(name, None)
    return Recorded(key, "", "", {}) if recorded.result else None


def pending(namespace: Mapping[str, Any]) -> bool:
    """Whether any stand-in is left (IPython's ``Out`` included)."""
    return any(True for _ in _all_stand_ins(namespace))


def _all_stand_ins(namespace: Mapping[str, Any]) -> Iterator[tuple[str, Recorded]]:
    for name, value in list(namespace.items()):
        if type(value) is Recorded:
            yield name, value
    out = namespace.get("Out")
    if isinstance(out, dict):
        for number, value in list(out.items()):
            if type(value) is Recorded:
                yield f"Out[{number}]", value


def needed(code: CellCode | None, namespace: Mapping[str, Any]) -> list[Recorded] | None:
    """The stand-ins a run of ``code`` can reach; None: any of them (load all).
    ``code`` None is a cell nbcache cannot read."""
    scanned = _source_scan(code.source) if code is not None else None
    if code is None or scanned is None or _reaches_anything(scanned[0]):
        return None
    found: dict[int, Recorded] = {}
    todo = [*code.reads, *scanned[1]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        value = namespace.get(name)
        if type(value) is Recorded:
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
            names = _names_used(code_value)
            if _reaches_anything(names):
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
        if id(obj) in seen or isinstance(obj, _LEAVES) or type(obj) is Recorded:
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


def _source_scan(source: str) -> tuple[set[str], set[str]] | None:
    """One walk of the cell's code: the names that say what it may reach (the names it
    reads, its attribute names such as ``sys.modules``, the modules it imports from,
    ``from __main__ import x``), and the names it needs bound besides its reads: those
    it deletes (``del x`` needs ``x``) and those its string constants name (a formula
    ``"y ~ f(x)"``, ``DataFrame.query("a > @limit")``, an ``eval`` string looks names
    up in the caller's namespace). None when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    reached: set[str] = set()
    wanted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                reached.add(node.id)
            elif isinstance(node.ctx, ast.Del):
                wanted.add(node.id)
        elif isinstance(node, ast.Attribute):
            reached.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            reached.add(node.module or "")
        elif isinstance(node, ast.Import):
            reached.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            wanted.update(names_in_string(node.value, evaluated=True))
    return reached, wanted


def _reaches_anything(names: Iterable[str]) -> bool:
    # IPython's history names (``_``, ``_3``, ``Out``) hold results restored as stand-ins.
    return any(n in _DYNAMIC or (is_shell_name(n) and not n.startswith("__")) for n in names)


def _names_used(value: Any) -> set[str]:
    """Every name the code of a notebook function or class could look up as a global
    (attribute names too: more than needed, never less)."""
    names: set[str] = set()
    seen: set[int] = set()
    todo: list[Any] = [value]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None and wrapped is not obj:
            todo.append(wrapped)
        if isinstance(obj, type):
            todo.extend(vars(obj).values())
        elif isinstance(obj, (staticmethod, classmethod)):
            todo.append(obj.__func__)
        elif isinstance(obj, property):
            todo.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, types.FunctionType):
            todo.append(obj.__code__)
        elif isinstance(obj, types.CodeType):
            names.update(obj.co_names)
            for const in obj.co_consts:
                if isinstance(const, types.CodeType):
                    todo.append(const)
                elif isinstance(const, str):  # a formula or query it passes on
                    names.update(names_in_string(const, evaluated=True))
    return names


def swap_in(
    chosen: list[Recorded] | None,
    namespace: dict[str, Any],
    load: Callable[[str], CellEntry | None],
) -> list[str]:
    """Replace the ``chosen`` stand-ins (None: all) with their values, loading each entry
    once through ``load(key) -> CellEntry | None``; the names loaded. A stand-in whose entry
    is gone stays, and a warning names it."""
    wanted = None if chosen is None else {id(r) for r in chosen}
    by_key: dict[str, list[tuple[str, Recorded]]] = {}
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
            namespace[where] = _resolve(rec.imports)  # as the plain run's import did
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
            loaded.append(where)
    return loaded
