"""State outside the namespace that a cell reads or changes, recorded and re-applied.

A cell can change more than its variables: the global random generators
(``random``, ``numpy.random``), matplotlib's settings (``plt.style.use``,
``rcParams``), ``sys.path`` and ``os.environ``. A restore that skipped those
would leave later cells drawing other numbers or other pictures, so:

- what a run changed of them is stored with the entry and applied again on a
  hit (the generators' states after the cell, the settings it set, the paths
  and variables it added or removed);
- the generators and matplotlib's settings are also inputs: a cell that drew
  random numbers without seeding first, or that drew a figure, hits only while
  they are as they were when it ran (``inputs``); anything else would be stale.

``sys.path`` and ``os.environ`` are re-applied but not inputs (see
docs/decisions.md). Only modules already imported are looked at: nothing here
imports numpy or matplotlib.
"""

from __future__ import annotations

import ast
import os
import pickle
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import xxhash

__all__ = ["Effects", "apply", "forget_seeds", "only_imports", "restore_state", "seeds_first"]

_UNSET = "<unset>"


@dataclass(frozen=True)
class Effects:
    """The outside state at one moment (only the parts whose modules are loaded)."""

    random: Any
    numpy_random: Any
    rc: dict[str, Any] | None
    path: list[str]
    environ: dict[str, str]
    seeded: frozenset[str] = frozenset()  # generators seeded in this kernel by then

    @classmethod
    def now(cls) -> Effects:
        numpy = sys.modules.get("numpy")
        mpl = sys.modules.get("matplotlib")
        rc = getattr(mpl, "rcParams", None)
        _watch_seeds(numpy)
        return cls(
            random=random.getstate(),
            numpy_random=_numpy_state(numpy),
            rc=dict.copy(rc) if isinstance(rc, dict) else None,  # no per-key validation
            path=list(sys.path),
            environ=dict(os.environ),
            seeded=frozenset(_SEEDED),
        )

    def changes(self, after: Effects) -> dict[str, Any]:
        """What changed from this moment to ``after``, as stored with an entry."""
        out: dict[str, Any] = {}
        if after.random != self.random:
            out["random"] = after.random
        if after.numpy_random is not None and not _same(self.numpy_random, after.numpy_random):
            out["numpy.random"] = after.numpy_random
        if after.rc is not None:
            before = self.rc or {}
            changed = {k: v for k, v in after.rc.items() if k not in before or before[k] != v}
            if changed:
                out["rcParams"] = changed
        if after.path != self.path:
            out["sys.path"] = after.path
        env = {k: v for k, v in after.environ.items() if self.environ.get(k) != v}
        env.update({k: _UNSET for k in self.environ if k not in after.environ})
        if env:
            out["os.environ"] = env
        if after.seeded != self.seeded and ("random" in out or "numpy.random" in out):
            out["seeded"] = sorted(after.seeded)
        return out

    def inputs(self, changes: Mapping[str, Any], *, seeded: bool, drew: bool) -> dict[str, str]:
        """Digests of the outside state this run depended on: the generators it drew from
        (unless it seeded them first) and matplotlib's settings if it drew a figure."""
        out = {}
        # A generator never seeded in this kernel holds entropy: what a cell draws from it
        # is a sample as good as any other, so its state is no input (an unseeded
        # simulation restores). Once seeded, its state decides what cells draw.
        if not seeded:
            if "random" in changes and "random" in self.seeded:
                out["random"] = _digest(self.random)
            if "numpy.random" in changes and "numpy.random" in self.seeded:
                out["numpy.random"] = _digest(self.numpy_random)
        if drew and self.rc is not None:
            out["rcParams"] = _digest(sorted((k, repr(v)) for k, v in self.rc.items()))
        return out

    def differs(self, inputs: Mapping[str, str]) -> list[str]:
        """What of ``inputs`` differs now, in words for ``why``; empty when nothing does."""
        now = {
            "random": lambda: _digest(self.random),
            "numpy.random": lambda: _digest(self.numpy_random),
            "rcParams": lambda: _digest(sorted((k, repr(v)) for k, v in (self.rc or {}).items())),
        }
        words = {
            "random": "the state of the `random` module's generator differs",
            "numpy.random": "the state of numpy's global random generator differs",
            "rcParams": "matplotlib's settings (rcParams, a style) differ",
        }
        return [words[k] for k, v in inputs.items() if k in now and now[k]() != v]


def apply(changes: Mapping[str, Any]) -> None:
    """Make the outside state what a stored run left it (a hit)."""
    if "seeded" in changes:
        _SEEDED.clear()
        _SEEDED.update(changes["seeded"])
    if "random" in changes:
        random.setstate(_tuples(changes["random"]))
    numpy = sys.modules.get("numpy")
    if "numpy.random" in changes and numpy is not None:
        numpy.random.set_state(changes["numpy.random"])
    mpl = sys.modules.get("matplotlib")
    if "rcParams" in changes and mpl is not None:
        mpl.rcParams.update(changes["rcParams"])
    if "sys.path" in changes:
        sys.path[:] = changes["sys.path"]
    for key, value in changes.get("os.environ", {}).items():
        if value == _UNSET:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def restore_state(state: Effects) -> None:
    """Put the outside state back as it was at ``state`` (after a plan restored entries)."""
    random.setstate(state.random)
    numpy = sys.modules.get("numpy")
    if numpy is not None and state.numpy_random is not None:
        numpy.random.set_state(state.numpy_random)
    mpl = sys.modules.get("matplotlib")
    if mpl is not None and state.rc is not None:
        dict.update(mpl.rcParams, state.rc)  # as it was, without re-validating each key
    sys.path[:] = state.path
    for key in [k for k in os.environ if k not in state.environ]:
        del os.environ[key]
    os.environ.update(state.environ)
    _SEEDED.clear()
    _SEEDED.update(state.seeded)


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
    """Forget which generators were seeded, as a new kernel starts (tests, unload)."""
    _SEEDED.clear()


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


def _numpy_state(numpy: Any) -> Any:
    if numpy is None:
        return None
    try:
        return numpy.random.get_state()
    except Exception:  # noqa: BLE001 - a numpy without a global generator: nothing to track
        return None


def _same(a: Any, b: Any) -> bool:
    return _digest(a) == _digest(b)


def _digest(state: Any) -> str:
    return xxhash.xxh3_128_hexdigest(pickle.dumps(state, protocol=4))


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples where a round trip through storage may give lists."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_tuples(v) for v in value)
    return value
