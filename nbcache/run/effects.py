"""State outside the namespace that a cell reads or changes, recorded and re-applied.

A cell can change more than its variables: the global random generators, numpy's
print options, pandas' options, the warnings filters, the working directory,
``sys.path``, ``os.environ`` and any other global a library keeps. A restore
that skipped those would leave later cells computing or showing something else
than a plain run, so each such state is a :class:`State` in one registry
(:func:`register`; the built-in ones are in :mod:`nbcache.run.states`), with a
cheap way to read it and one to set it back:

- each state whose module is imported is read before and after a cell; what
  differs is stored with the entry and applied again, in registry order, on a hit;
- a state whose new value cannot be stored (a logging handler that cannot be
  made again, a value that will not pickle) makes the cell run every time
  (:attr:`Effects.unrestorable` says which, for ``why``);
- the settings cells changed so far in this kernel (everything but the
  generators, matplotlib's settings, the working directory, ``sys.path`` and
  ``os.environ``) are an input of every later cell: another
  ``np.set_printoptions`` upstream is a miss, not a stale printout;
- the generators and matplotlib's settings are also inputs: a cell that drew
  random numbers without seeding first, or that drew a figure, hits only while
  they are as they were when it ran (``inputs``).

Nothing here imports a library: a state is read only once its module is loaded.
"""

from __future__ import annotations

import ast
import io
import pickle
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import xxhash

from ..errors import CacheError
from .state import UNSET, State, Unrestorable
from .states import BUILT_IN

__all__ = [
    "UNSET",
    "Effects",
    "State",
    "Unrestorable",
    "apply",
    "forget_seeds",
    "only_imports",
    "ran",
    "register",
    "registered",
    "restore_state",
    "seeds_first",
    "stale",
    "unregister",
]


class EffectsError(CacheError):
    """A state registered wrongly (a name twice, a read that is not callable)."""


_REGISTRY: dict[str, State] = {}


def register(
    name: str,
    read: Callable[[], Any],
    apply: Callable[[Any], None],
    *,
    module: str | None = None,
    keyed: bool = False,
    setting: bool = True,
    what: str = "",
    replace: bool = False,
) -> State:
    """Add a process-wide state for cells to record and restore (see docs/effects.md)."""
    if not callable(read) or not callable(apply):
        raise EffectsError(f"nbcache: state {name!r} needs a callable read and apply.")
    if name in _REGISTRY and not replace:
        raise EffectsError(
            f"nbcache: a state named {name!r} is already registered; pass replace=True "
            "to replace it, or pick another name."
        )
    state = State(name, read, apply, module, keyed, setting, what)
    _REGISTRY[name] = state
    return state


for _state in BUILT_IN:
    _REGISTRY[_state.name] = _state


def unregister(name: str) -> None:
    """Stop recording ``name`` (entries that stored it still apply it if registered)."""
    _REGISTRY.pop(name, None)


def registered() -> list[State]:
    """The states, in the order they are read and applied."""
    return list(_REGISTRY.values())


_ABSENT: Any = object()  # a state not readable at a moment (its module not loaded)

# The settings cells changed so far in this kernel, as applied: an input of every cell.
_world: dict[str, Any] = {}
_world_digest: list[str | None] = [None]


def ran(changes: Mapping[str, Any]) -> None:
    """A cell's run ended having made ``changes``: the settings among them are now an
    input of the cells after it. Only a cell's end notes them, never a checkpoint in the
    middle of its loop: its own changes would otherwise be "an earlier cell's" to its
    next attempt, and no checkpoint of a cell that imports a library would resume."""
    _note_world(changes)


def _note_world(changes: Mapping[str, Any]) -> None:
    touched = False
    for name, value in changes.items():
        state = _REGISTRY.get(name)
        if state is None or not state.setting:
            continue
        touched = True
        if state.keyed and isinstance(value, dict):
            merged = dict(_world.get(name, {}))
            merged.update(value)
            _world[name] = merged
        else:
            _world[name] = value
    if touched:
        _world_digest[0] = None


def _settings_digest() -> str:
    known = _world_digest[0]
    if known is None:
        known = _world_digest[0] = _digest(sorted(_world.items()))
    return known


@dataclass(frozen=True)
class Effects:
    """The outside state at one moment (only the states whose modules are loaded)."""

    values: dict[str, Any]
    seeded: frozenset[str] = frozenset()  # generators seeded in this kernel by then
    world: dict[str, Any] = field(default_factory=dict)
    settings: str = ""
    # States whose library the cell itself imported: their values then were the
    # library's defaults, which a later kernel gets by importing it too, so they are
    # no input (that kernel has not imported it yet when it looks the cell up).
    imported: set[str] = field(default_factory=set)

    @classmethod
    def now(cls) -> Effects:
        modules = sys.modules
        _watch_seeds(modules.get("numpy"))
        values = {}
        for state in list(_REGISTRY.values()):
            if state.module is not None and state.module not in modules:
                continue
            try:
                values[state.name] = state.read()
            except Exception:  # noqa: BLE001 - a state that cannot be read now is skipped
                continue
        return cls(values, frozenset(_SEEDED), dict(_world), _settings_digest())

    @contextmanager
    def importing(self) -> Iterator[None]:
        """Around an import the cell makes: what the import itself sets (a library's
        defaults once it is loaded, the warnings filters it adds) becomes part of this
        starting state, so it is no change of the cell's. A plain kernel that imports the
        library gets the same, and a cell that only imports changes no setting."""
        pre = Effects.now()
        try:
            yield
        finally:
            self._absorb(pre, Effects.now())

    def _absorb(self, pre: Effects, post: Effects) -> None:
        for name, value in post.values.items():
            had = pre.values.get(name, _ABSENT)
            if had is not _ABSENT and _same(had, value):
                continue  # the import left it as it was
            mine = self.values.get(name, _ABSENT)
            state = _REGISTRY.get(name)
            if mine is _ABSENT or had is _ABSENT:
                self.values[name] = value
                if mine is _ABSENT:
                    self.imported.add(name)
            elif state is not None and state.keyed and _dicts(mine, had, value):
                merged = dict(mine)
                for key, new in value.items():
                    imported = key not in had or not _same(had[key], new)
                    untouched = key not in mine or (key in had and _same(mine[key], had[key]))
                    if imported and untouched:  # the import set it, the cell had not yet
                        merged[key] = new
                self.values[name] = merged
            elif _same(mine, had):
                self.values[name] = value

    def changes(self, after: Effects) -> dict[str, Any]:
        """What changed from this moment to ``after``, as stored with an entry."""
        out: dict[str, Any] = {}
        for name, value in after.values.items():
            state = _REGISTRY.get(name)
            if state is None:
                continue
            if name not in self.values:
                before: Any = {} if state.keyed else None
            else:
                before = self.values[name]
            if state.keyed and isinstance(value, dict) and isinstance(before, dict):
                if _same_dict(before, value):
                    continue
                diff = {
                    k: v for k, v in value.items() if k not in before or not _same(before[k], v)
                }
                diff.update({k: UNSET for k in before if k not in value})
                if diff:
                    out[name] = diff if state.delta is None else state.delta(before, diff)
            elif name not in self.values or not _same(before, value):
                out[name] = value if state.delta is None else state.delta(before, value)
        if after.seeded != self.seeded and ("random" in out or "numpy.random" in out):
            out["seeded"] = sorted(after.seeded)
        return out

    def inputs(self, changes: Mapping[str, Any], *, seeded: bool, drew: bool) -> dict[str, str]:
        """Digests of the outside state this run depended on: the generators it drew from
        (unless it seeded them first), matplotlib's settings if it drew a figure, and the
        settings earlier cells changed."""
        out: dict[str, str] = {}
        # A generator never seeded in this kernel holds entropy: what a cell draws from it
        # is a sample as good as any other, so its state is no input (an unseeded
        # simulation restores). Once seeded, its state decides what cells draw.
        if not seeded:
            for name in ("random", "numpy.random"):
                if name in changes and name in self.seeded and name in self.values:
                    out[name] = _digest(self.values[name])
        rc = self.values.get("rcParams")
        if drew and rc is not None and "rcParams" not in self.imported:
            out["rcParams"] = _rc_digest(rc)
        if self.world:
            out["settings"] = self.settings
        return out

    def differs(self, inputs: Mapping[str, str]) -> list[str]:
        """What of ``inputs`` differs now, in words for ``why``; empty when nothing does."""
        words = {
            "random": "the state of the `random` module's generator differs",
            "numpy.random": "the state of numpy's global random generator differs",
            "rcParams": "matplotlib's settings (rcParams, a style) differ",
            "settings": "a setting an earlier cell changed (print options, library "
            "options, warnings filters, ...) differs",
        }
        out = []
        for name, recorded in inputs.items():
            if name == "settings":
                now = self.settings
            elif name == "rcParams":
                now = _rc_digest(self.values.get("rcParams") or {})
            elif name in self.values:
                now = _digest(self.values[name])
            else:
                continue
            if now != recorded and name in words:
                out.append(words[name])
        # An entry made before any setting changed has no "settings" input: it hits
        # only while none has changed.
        if "settings" not in inputs and self.world:
            out.append(words["settings"])
        return out

    def unrestorable(self, changes: Mapping[str, Any]) -> list[str]:
        """The states in ``changes`` that cannot be stored, in words: the cell runs every
        time."""
        out = []
        for name, value in changes.items():
            state = _REGISTRY.get(name)
            if state is None:
                continue
            items = value.values() if state.keyed and isinstance(value, dict) else [value]
            if any(_unstorable(v) for v in items):
                out.append(state.words)
        return out


def stale(inputs: Mapping[str, str]) -> list[str]:
    """:meth:`Effects.differs` for the state now, reading only the states ``inputs``
    names (a hit checks this before it is used: the settings alone cost no read)."""
    values: dict[str, Any] = {}
    for name in inputs:
        state = _REGISTRY.get(name)
        if state is None or (state.module is not None and state.module not in sys.modules):
            continue
        try:
            values[name] = state.read()
        except Exception:  # noqa: BLE001 - a state that cannot be read now is skipped
            continue
    return Effects(values, frozenset(_SEEDED), _world, _settings_digest()).differs(inputs)


def _unstorable(value: Any) -> bool:
    if isinstance(value, Unrestorable):
        return True
    if isinstance(value, (tuple, list)):
        return any(_unstorable(v) for v in value)
    try:
        pickle.dumps(value, protocol=5)
    except Exception:  # noqa: BLE001 - whatever will not pickle cannot be stored
        return True
    return False


def apply(changes: Mapping[str, Any]) -> list[str]:
    """Make the outside state what a stored run left it (a hit), in registry order; the
    states that could not be set back, in words (a state no longer registered, a
    library not installed here)."""
    if "seeded" in changes:
        _SEEDED.clear()
        _SEEDED.update(changes["seeded"])
    failed = []
    for state in list(_REGISTRY.values()):
        if state.name not in changes:
            continue
        if state.module is not None and state.module not in sys.modules:
            try:
                __import__(state.module)
            except ImportError:
                failed.append(state.words)
                continue
        try:
            state.apply(changes[state.name])
        except Exception:  # noqa: BLE001 - one state that will not set stops no other
            failed.append(state.words)
    _note_world(changes)
    return failed


def restore_state(state: Effects) -> None:
    """Put the outside state back as it was at ``state`` (after a plan restored entries)."""
    for item in list(_REGISTRY.values()):
        if item.name not in state.values:
            continue
        value = state.values[item.name]
        try:
            if item.keyed:
                now = item.read()
                diff = {k: v for k, v in value.items() if now.get(k) != v}
                diff.update({k: UNSET for k in now if k not in value})
                if diff:
                    (item.reset or item.apply)(diff)
            elif not _same(item.read(), value):
                (item.reset or item.apply)(value)
        except Exception:  # noqa: BLE001 - best effort: the rest are still put back
            continue
    _SEEDED.clear()
    _SEEDED.update(state.seeded)
    _world.clear()
    _world.update(state.world)
    _world_digest[0] = None


_SEEDED: set[str] = set()  # "random", "numpy.random": seeded with a value in this kernel
_WATCHED: set[str] = set()


def _watch_seeds(numpy: Any) -> None:
    """Note when a global generator is seeded (``random.seed(0)``, ``np.random.seed(0)``),
    by wrapping the seeding function once; seeding with None (entropy) clears the note."""
    targets = [("random", random, "seed")]
    if numpy is not None:
        targets.append(("numpy.random", numpy.random, "seed"))
    for name, module, attr in targets:
        if name in _WATCHED:
            continue
        original = getattr(module, attr, None)
        if original is None:
            continue

        def seed(*args: Any, __original: Any = original, __name: str = name, **kw: Any) -> Any:
            value = args[0] if args else kw.get("a", kw.get("seed"))
            (_SEEDED.discard if value is None else _SEEDED.add)(__name)
            return __original(*args, **kw)

        seed.__wrapped__ = original  # type: ignore[attr-defined]
        seed.__doc__ = original.__doc__
        setattr(module, attr, seed)
        _WATCHED.add(name)


def forget_seeds() -> None:
    """Forget which generators were seeded and which settings cells changed, as a new
    kernel starts (tests, unload)."""
    _SEEDED.clear()
    _world.clear()
    _world_digest[0] = None


def seeds_first(source: str) -> bool:
    """Whether the cell seeds a generator before it calls anything else (``np.random.seed(0)``
    after the imports): then the state it found does not matter."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for stmt in tree.body:
        calls = [n for n in ast.walk(stmt) if isinstance(n, ast.Call)]
        if not calls:
            continue
        first = calls[0].func
        name = first.attr if isinstance(first, ast.Attribute) else getattr(first, "id", "")
        return isinstance(stmt, ast.Expr) and name in ("seed", "manual_seed")
    return False


def only_imports(source: str) -> bool:
    """Whether every statement of the cell is an import: what it binds (modules, functions)
    cannot depend on the generators' state, though importing a library may draw from
    them (scikit-learn's first import does)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in tree.body)


def _same_dict(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    try:
        return bool(a == b)  # one C-level pass when nothing changed, the usual case
    except Exception:  # noqa: BLE001 - values that will not compare: key by key then
        return False


def _dicts(*values: Any) -> bool:
    return all(isinstance(v, dict) for v in values)


def _same(a: Any, b: Any) -> bool:
    try:
        equal = a == b
        if isinstance(equal, bool):
            return equal
    except Exception:  # noqa: BLE001 - values that will not compare are compared by digest
        pass
    return _digest(a) == _digest(b)


def _digest(state: Any) -> str:
    """The same for equal values however they share objects: a value read in this process
    and the same value unpickled from an entry pickle the same without a memo."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=4)
    pickler.fast = True  # no memo: shared and equal copies give the same bytes
    try:
        pickler.dump(state)
        data = buffer.getvalue()
    except Exception:  # noqa: BLE001 - a value that will not pickle digests by its repr
        data = repr(state).encode()
    return xxhash.xxh3_128_hexdigest(data)


# rcParams that decide how matplotlib runs, not what a figure looks like: IPython turns
# ``interactive`` on when a cell first draws, which a restored cell never does, and an
# unchosen ``backend`` resolves on first use.
_RC_NOT_LOOKS = frozenset({"interactive", "backend"})


def _rc_digest(rc: Mapping[str, Any]) -> str:
    return _digest(sorted((k, repr(v)) for k, v in rc.items() if k not in _RC_NOT_LOOKS))
