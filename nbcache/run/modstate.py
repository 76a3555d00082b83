"""Whether a cell changed state held by a module, found by comparing before and after.

``import mymod; mymod.CONFIG["x"] = 1`` changes an object a module holds: no
restore of the cell's variables brings that back, so such a cell must run every
time. Which modules and attributes to compare comes from what the cell touches:

- every module the cell spells as ``name.attr`` or imports from: for a module
  beside the notebook (not installed), all its attributes; for an installed one,
  the attributes the cell names (``np.set_printoptions`` never digests numpy);
- a module the cell imports for the first time is read just after its import
  returns (``builtins.__import__`` is wrapped while such a cell runs), so a
  change made after the import is seen too.

Each attribute is read as its identity (modules, classes, functions: replaced or
not) or the digest of its content (data: changed in place or not).
"""

from __future__ import annotations

import builtins
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from ..errors import KeyPicklingError
from ..keys.hashing import digest
from ..keys.scope import CellCode

__all__ = ["ModuleWatch", "held_by_module", "watching"]

_CODE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
_ALL = "*"
_NOT = "unset"  # an attribute the module does not have (or a submodule: an import)


def _installed_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(os.path.realpath(r) + os.sep for r in roots | {sys.prefix, sys.base_prefix})


_INSTALLED = _installed_roots()


_LOCAL: dict[str, bool] = {}  # a module's file -> beside the notebook or not


def local(module: types.ModuleType) -> bool:
    """A module beside the notebook (its file outside the Python installation)."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return False
    known = _LOCAL.get(path)
    if known is None:
        known = _LOCAL[path] = not os.path.realpath(path).startswith(_INSTALLED)
    return known


def _token(value: Any) -> str:
    if isinstance(value, _CODE):
        return f"id:{id(value)}"
    try:
        return digest(value)
    except (KeyPicklingError, Exception):  # noqa: BLE001 - what will not hash counts by identity
        return f"id:{id(value)}"


def _covered() -> set[int]:
    """Objects whose changes are recorded as process-wide states (run/states.py), or that
    are no one's state: not module state to compare."""
    out = {id(sys.modules), id(sys.path), id(sys.meta_path), id(os.environ)}
    for module, attr in _COVERED:
        held = getattr(sys.modules.get(module), attr, None)
        if held is not None:
            out.add(id(held))
    return out


_COVERED = [
    ("warnings", "filters"),
    ("matplotlib", "rcParams"),
    ("matplotlib.pyplot", "rcParams"),
    ("pandas", "options"),
    ("logging", "root"),
]
_CONTAINERS = (dict, list, set, bytearray)
_LARGE = 10_000


def _snapshot(
    module: types.ModuleType, attrs: set[str], covered: set[int] | None = None
) -> dict[str, str]:
    """Tokens of a module's attributes: all data of a module beside the notebook; of an
    installed one, the plain containers named (its other objects change through the
    library's own calls, recorded as process-wide states, or are patches)."""
    space = vars(module)
    names = [n for n in space if not n.startswith("__")] if _ALL in attrs else attrs
    mine = local(module)
    covered = _covered() if covered is None else covered
    out = {}
    for name in names:
        if name == _ALL:
            continue
        if name not in space:
            out[name] = _NOT
            continue
        value = space[name]
        if isinstance(value, types.ModuleType):
            # A submodule appears as an attribute when it is first imported, and numpy
            # and others import theirs lazily on first use (``np.random.seed``): an
            # import, not a change of state, so it reads as an attribute not set.
            out[name] = _NOT
            continue
        if id(value) in covered:
            continue
        data = not isinstance(value, _CODE)
        if data and not mine and (not isinstance(value, _CONTAINERS) or len(value) > _LARGE):
            continue
        out[name] = _token(value)
    return out


class ModuleWatch:
    """What of which modules to compare, the state before, and what changed after."""

    def __init__(self, code: CellCode, namespace: Mapping[str, Any]) -> None:
        self.code = code
        self.namespace = namespace
        self.before: dict[str, dict[str, str]] = {}
        self.wanted: dict[str, set[str]] = {}  # module name -> attributes ("*": all)
        for module, attr in code.from_imports:
            self.wanted.setdefault(module, set()).add(attr)
        self.roots: dict[str, set[str]] = {}
        for root, attr in code.module_attrs:
            self.roots.setdefault(root, set()).add(attr)
        for root, attrs in self.roots.items():
            value = namespace.get(root)
            if isinstance(value, types.ModuleType):
                self.wanted.setdefault(value.__name__, set()).update(attrs)
        self.fresh = [m for m in code.imports if m not in sys.modules]
        self._take(list(self.wanted))

    def _take(self, names: list[str]) -> None:
        for name in names:
            module = sys.modules.get(name)
            if module is None or name in self.before:
                continue
            attrs = self.wanted.get(name, set())
            if local(module):
                attrs = attrs | {_ALL}
            if attrs:
                self.before[name] = _snapshot(module, attrs)

    def imported(self) -> None:
        """After an import of the cell returned: read the modules it loaded first."""
        for name in self.fresh:
            module = sys.modules.get(name)
            if module is None or name in self.before:
                continue
            attrs = set(self.wanted.get(name, ()))
            for root, names in self.roots.items():
                if root == name.split(".")[0] or root in self.code.binds:
                    attrs |= names
            if local(module):
                attrs.add(_ALL)
            if attrs:
                self.before[name] = _snapshot(module, attrs)

    def changed(self) -> list[str]:
        """``module.attr`` for each attribute the cell replaced or changed in place."""
        out = []
        for name, before in self.before.items():
            module = sys.modules.get(name)
            if module is None:
                continue
            whole = local(module)
            after = _snapshot(module, {_ALL} if whole else set(before))
            names = sorted(set(before) | set(after)) if whole else sorted(before)
            out += [f"{name}.{a}" for a in names if after.get(a, _NOT) != before.get(a, _NOT)]
        return out

    @contextmanager
    def importing(
        self, around: Callable[[], AbstractContextManager[object]] = nullcontext
    ) -> Iterator[ModuleWatch]:
        """Around the body: read each module the cell imports first just after its import
        returns (``builtins.__import__`` wrapped only while such a cell runs); each such
        import runs inside ``around()`` (what the import itself sets is no change of the
        cell's: see :meth:`nbcache.run.effects.Effects.importing`).

        Only an import statement of the notebook's own code counts so: a library that
        imports a module as the cell calls it (matplotlib's first figure loads the inline
        backend, which turns ``interactive`` on) sets what the call sets, which a restore,
        making no such call, must make again."""
        if not self.fresh:
            yield self
            return
        original = builtins.__import__
        depth = [0]
        namespace = self.namespace

        def hooked(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # a failed import shows the user's line, not this one
            depth[0] += 1
            try:
                if depth[0] == 1 and sys._getframe(1).f_globals is namespace:
                    with around():
                        return original(*args, **kwargs)
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    self.imported()

        builtins.__import__ = hooked
        try:
            yield self
        finally:
            if builtins.__import__ is hooked:
                builtins.__import__ = original


def watching(code: CellCode, namespace: Mapping[str, Any]) -> AbstractContextManager[ModuleWatch]:
    """Read the module state ``code`` may touch, around the block that runs it."""
    return ModuleWatch(code, namespace).importing()


def held_by_module(value: Any) -> str | None:
    """``module.attr`` of a module beside the notebook that holds ``value`` itself, or
    None (a mutated variable that a module shares: its change is the module's)."""
    if isinstance(value, (int, float, str, bytes, bool, type(None), tuple, frozenset)):
        return None
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or not local(module):
            continue
        for attr, held in list(vars(module).items()):
            if held is value and not attr.startswith("__"):
                return f"{name}.{attr}"
    return None
