"""A library's modules, functions and classes a restored cell bound, standing in until
a cell runs (see :mod:`nbcache.run.lazy`), and the imports made then.

Before a cell runs that may reach a library, every module restored cells imported
is imported, in the notebook's order, and every stand-in bound
(:func:`import_deferred`; :func:`nbcache.run.lazy.reaches_libraries`): importing
``hvplot.pandas`` adds an accessor to pandas' DataFrame, ``janitor`` methods,
``mpl_toolkits.mplot3d`` a projection, and a cell uses those through a value, or
through its own ``import pandas``, without naming the module. Which imports
changed nothing outside their own package is not known, so none is left out.

A stand-in says where its value is imported from (``module`` or
``module:qual.name``) and hashes as the value would: its digest and, for a module,
the fingerprint notebook code feeds where it reads it as a global. Both were
recorded when the cell ran; they hold while the file of the library's package is
the one it was then (:func:`stamp`), found without importing anything. Bringing one
back is the import a plain run made, so a cell sees the very module it would.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import types
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..keys.classes import describe
from ..keys.modules import is_local_module, locate_module, module_fingerprint
from ..keys.scope import CellCode
from ..keys.standin import StandIn
from .cellrun import ModuleRef
from .records import RecordedVar, imports_of_meta, modules_of_meta

__all__ = [
    "Waiting",
    "deferred",
    "import_deferred",
    "import_path",
    "import_stand_in",
    "import_stand_ins",
    "importable",
    "imported_in_order",
    "placed",
    "resolve",
    "seen_elsewhere",
    "stamp",
]


def placed(key: str, name: str, rec: RecordedVar) -> Any:
    """What a header restore binds for ``rec``: the value itself when its module is
    loaded already, or its package changed since (imported now, as a restore in full
    would); else its stand-in."""
    assert rec.imports is not None
    if rec.imports.partition(":")[0] in sys.modules or stamp(rec.imports) != rec.stamp:
        return resolve(rec.imports)
    return import_stand_in(key, name, rec)


def imported_in_order(code: CellCode) -> list[str]:
    """After a cell ran: the modules its imports name that are loaded, in its order, a
    submodule a ``from`` import bound after its package. Importing them again is what the
    cell's imports did (an import inside a function it never called is left out, unless
    another cell loaded the module, which a lazy run imports for that cell anyway)."""
    out: dict[str, None] = {}
    for module in code.imports:
        if module in sys.modules:
            out[module] = None
        for package, name in code.from_imports:
            if package == module and f"{module}.{name}" in sys.modules:
                out[f"{module}.{name}"] = None
    return list(out)


def deferred(meta: Mapping[str, Any], lazy: bool = True, publisher: Any = None) -> list[str]:
    """After a restore: the modules the entry's cell imported that are not loaded now
    (``import hvplot.pandas`` binds ``hvplot`` alone, which a restore imports). A lazy
    run leaves them to :func:`import_deferred` before the next cell runs; else they are
    imported now (``lazy`` False), and none is left."""
    waiting = [m for m in imports_of_meta(meta) or () if m not in sys.modules]
    if lazy:
        return waiting
    import_deferred(waiting, {}, publisher)
    return []


@dataclass
class Waiting:
    """The modules restored cells imported that a lazy run has not imported yet, in the
    notebook's order; made before a cell runs, and before a hit's outside state is read
    while a module it lives in is not loaded (a plain run's imports had set it)."""

    modules: list[str] = field(default_factory=list)

    def add(self, meta: Mapping[str, Any], lazy: bool, publisher: Any) -> None:
        """After a restore: see :func:`deferred`."""
        self.modules += deferred(meta, lazy, publisher)

    def make(self, namespace: dict[str, Any], publisher: Any) -> list[str]:
        """Every waiting import, then every stand-in of a module bound: the names bound."""
        waiting, self.modules = self.modules, []
        return import_deferred(waiting, namespace, publisher)


@contextmanager
def _quietly(publisher: Any) -> Iterator[None]:
    """What an import prints, shows or warns goes nowhere: the restored cell that made it
    replayed what it showed then. ``publisher``: the shell's display publisher, if any."""
    saved = sys.stdout, sys.stderr, warnings.showwarning
    own = vars(publisher).get("publish") if hasattr(publisher, "__dict__") else None
    sys.stdout = sys.stderr = io.StringIO()
    warnings.showwarning = lambda *args, **kwargs: None
    if publisher is not None:
        publisher.publish = lambda *args, **kwargs: None
    try:
        yield
    finally:
        sys.stdout, sys.stderr, warnings.showwarning = saved
        if publisher is not None:
            if own is None:
                del publisher.publish  # back to the class's method
            else:
                publisher.publish = own


def import_deferred(
    modules: list[str], namespace: dict[str, Any], publisher: Any = None
) -> list[str]:
    """Before a cell runs in a lazy run: import every module restored cells left waiting
    (``modules``, in the notebook's order), then bind every stand-in of a module, function
    or class to its value; the names bound. All of them, whatever the cell reads: an
    import may register into another library (an accessor on pandas' DataFrame, a
    projection in matplotlib, a colormap), and what the cell reaches of those libraries,
    through a restored value or its own import, cannot be told from its names."""
    bound = []
    with _quietly(publisher):
        for module in modules:
            importlib.import_module(module)  # as the plain run's import did, in its order
        for name, value in list(namespace.items()):
            if type(value) is StandIn and value.imports:
                namespace[name] = resolve(value.imports)
                bound.append(name)
    return bound


def seen_elsewhere(changed: Mapping[str, tuple[Any, Any]]) -> bool:
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


def import_stand_ins(key: str, meta: Mapping[str, Any]) -> dict[str, StandIn]:
    """For an entry restored in full: stand-ins for the modules, functions and classes it
    binds that are not loaded yet and whose package is as it was (see :func:`stand_ins`)."""
    out = {}
    for name, rec in modules_of_meta(meta).items():
        assert rec.imports is not None
        if rec.imports.partition(":")[0] in sys.modules or stamp(rec.imports) != rec.stamp:
            continue  # loaded already, or changed since: the restore imports it
        out[name] = import_stand_in(key, name, rec)
    return out


def import_stand_in(key: str, name: str, rec: RecordedVar) -> StandIn:
    assert rec.imports is not None
    return StandIn(
        key, name, rec.digest, rec.described, imports=rec.imports, fingerprint=rec.fingerprint
    )


def importable(recorded: str, value: Any) -> RecordedVar | None:
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
        found = import_path(value)
        if found is None:
            return None
        where, fingerprint, live = found, "", value
    stamped = stamp(where)
    if stamped is None:
        return None  # a built-in or namespace package: nothing tells its version apart
    return RecordedVar(recorded, describe(live), None, where, fingerprint, stamped)


def import_path(value: Any) -> str | None:
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
        found = resolve(where, load=False)
    except Exception:  # noqa: BLE001 - a name that does not give it back: no stand-in
        return None
    same = found is value or (isinstance(value, types.MethodType) and found == value)
    return where if same else None


def resolve(where: str, *, load: bool = True) -> Any:
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
