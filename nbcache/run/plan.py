"""A plan before running: for each cell of a notebook, restore or run, and why, without
executing any cell body.

The plan walks the cells as a whole-notebook run in a fresh kernel would, in a
scratch namespace: each cell's key is computed from what the cells before it
bound. A hit binds its values as the run would (stand-ins from the signed
header, or the entry itself when it binds code or modules, which is loaded but
not run). A cell kept in memory only because it is cheap runs, but its last
run recorded the digests of what it bound, so the keys after it are still
known. A cell that misses runs, and what it binds is unknown until it has: a
cell that reads it ``depends`` (it runs, or restores if the values come out as
before), unless no entry in the store can be its (it never ran with this store
and no cell before it has its code), when it runs. So each row is a statement
the run can be checked against: ``restore`` and ``run`` are what it does,
``depends`` either.
"""

from __future__ import annotations

import ast
import importlib
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..cache.core import Cache
from ..entry.pickling import restoring_into
from ..keys.modules import is_local_module
from ..keys.scope import CellCode, analyze
from ..keys.standin import StandIn
from ..units import format_duration
from .auto import wraps
from .cellrun import CellOptions, drifted, listed_line, put_back
from .decide import Action, Decision, Look, decide, read
from .effects import Effects, restore_state
from .lazy import stand_ins
from .lazyimports import deferred
from .records import CellEntry, LatestRun
from .setupmagics import split_setup

__all__ = ["PlanRow", "plan"]


@dataclass(frozen=True)
class PlanRow:
    """What a run would do with one cell."""

    index: int  # among the cells planned
    number: int  # as the reader counts the cell
    cell_id: str | None
    first_line: str
    action: Literal["restore", "run", "depends"]  # depends: run, or restore (see reasons)
    reasons: tuple[str, ...]
    seconds: float | None = None  # how long its body took the last time it ran
    decided: Action = "run"  # the decision in full: how it restores, how it runs

    def line(self) -> str:
        took = f" ({format_duration(self.seconds)})" if self.seconds is not None else ""
        why = "; ".join(self.reasons)
        action = "run or restore" if self.action == "depends" else self.action
        return f"cell {self.number} `{self.first_line}`: {action}{took}: {why}"

    def allows(self, outcome: str) -> bool:
        """Whether a run's ``outcome`` for the cell (``metadata["nbcache"]["outcome"]``)
        is what this row says: restored for a restore, any outcome that executed the
        body for a run, either for a row that depends."""
        if outcome == "not run":
            return True  # the run stopped before it: nothing to compare
        if self.action == "depends":
            return True
        return (outcome == "restored") == (self.action == "restore")


def plan(
    cells: Sequence[tuple[str | None, str]],
    cache: Cache,
    transform: Callable[[str], str],
    initial: Mapping[str, Any] | None = None,
    numbers: Sequence[int] | None = None,
    matplotlib: Callable[[str], object] | None = None,
) -> list[PlanRow]:
    """The plan of running ``cells`` (``(cell id, source as typed)``) in order in a fresh
    kernel in auto mode, against ``cache``; ``initial`` is what a fresh kernel's
    namespace holds (IPython puts its own ``open`` there, which keys hash). The outside
    state (random generators, matplotlib's settings) is as it was afterwards:
    restoring an entry applies its. ``numbers`` are the cells' numbers as the reader
    counts them (in a notebook with Markdown cells); default 1, 2, 3...

    ``matplotlib`` runs a ``%matplotlib`` line magic (its argument given) in the
    kernel the plan is made in, as the run will: it sets matplotlib's backend and
    settings, which the keys of the cells drawing after it read. Without it (a plan in
    the user's own kernel, where it ran already) such cells are not replayed."""
    walk = _Walk(cache, transform, matplotlib)
    walk.namespace.update(initial or {})
    walk.numbers = list(numbers) if numbers is not None else list(range(1, len(cells) + 1))
    before = Effects.now()
    try:
        with restoring_into(walk.namespace):
            for index, (cell_id, raw) in enumerate(cells):
                row = walk.row(index, cell_id, raw)
                if row is not None:
                    walk.rows.append(row)
    finally:
        restore_state(before)
    return walk.rows


class _Walk:
    def __init__(
        self,
        cache: Cache,
        transform: Callable[[str], str],
        matplotlib: Callable[[str], object] | None = None,
    ) -> None:
        self.cache = cache
        self.transform = transform
        self.matplotlib = matplotlib
        # the first cell that executes and may change the outside state (a seed, a
        # style) as no plan can know: after it, a miss for that state only depends
        self.unsettled: int | None = None
        # the first restored cell whose imports a lazy run makes only later, which may set
        # a state (matplotlib's settings) before the run checks a hit's: no plan makes them
        self.waiting: int | None = None
        self.drifted: dict[str, tuple[Any, str, str]] = {}  # as the run keeps them
        self.namespace: dict[str, Any] = {}
        self.unknown: dict[str, tuple[int, bool]] = {}  # name -> (cell, run outside the cache)
        self.rows: list[PlanRow] = []
        self.numbers: list[int] = []
        self.codes: set[str] = set()  # the code digests of the cells planned so far
        self.made: tuple[set[str], set[str]] | None = None  # the store's makers, lines

    def _new(self, identity: str, listed: str, code: str) -> bool:
        """Whether no entry can hit for a cell whatever its inputs: none in the store was
        made by it or by a cell with its listed line (the same code has the same line),
        and no cell before it in this run has its code (whose entry, made moments before,
        it could hit)."""
        if self.made is None:
            records = self.cache.ledger.records()
            self.made = ({r.identity for r in records}, {r.first_line for r in records})
        identities, lines = self.made  # every cell's entry says its line (meta_of)
        return identity not in identities and listed not in lines and code not in self.codes

    def row(self, index: int, cell_id: str | None, raw: str) -> PlanRow | None:
        text = raw.strip()
        if not text:
            return None  # an empty cell is not run
        first = text.splitlines()[0][:80]
        explicit = _explicit_cache(text)
        if explicit is not None:
            name, force, ignore, body = explicit
            return self._cell(
                index, cell_id, body, CellOptions(name=name, force=force, ignore=tuple(ignore))
            )
        if not wraps(raw):
            magic = first.split()[0] if first.startswith("%%") else "await"
            body = self._body(raw)
            self._unknown_after(index, _binds(body), outside=True, source=body)
            if magic.removeprefix("%%") not in _NOT_PYTHON:
                self._executes(index, body)
            why = (
                f"it begins with {magic}, so it runs as without nbcache"
                if magic != "await"
                else "it awaits at its top level, so it runs as without nbcache"
            )
            number = self.numbers[index]
            return PlanRow(index, number, cell_id, first, "run", (why,), None, "uncached")
        return self._cell(index, cell_id, raw, CellOptions())

    def _cell(self, index: int, cell_id: str | None, raw: str, options: CellOptions) -> PlanRow:
        """The row of a cell %%cache runs: from auto mode or the notebook's (its options),
        as :func:`nbcache.run.decide.decide` decides it, against a fresh kernel."""
        number = self.numbers[index]
        first = raw.strip().splitlines()[0][:80] if raw.strip() else ""
        setup, source = split_setup(self.transform(raw))
        if setup:  # its set-up magics run first in every kernel, as a cell of their own
            self._executes(index, setup)
        # read once; its identity (which names the cell by its first code line) after
        readout = read(source, self.namespace, identity="")
        label = readout.code.first_line if readout.code is not None else first
        identity = options.name or cell_id or f"cell: {label}"
        readout = replace(readout, identity=identity)
        if readout.code is None or readout.action != "run":
            binds = readout.code.binds if readout.code else frozenset()
            self._unknown_after(index, binds, outside=True, source=source)
            self._executes(index, source)
            took = _seconds(LatestRun.read(self.cache.latest(identity)))
            return PlanRow(
                index, number, cell_id, first, "run", readout.reasons, took, readout.action
            )
        code = readout.code
        latest = LatestRun.read(self.cache.latest(identity))
        waits = self._waits(index, identity, code, latest, source)
        if waits is not None:
            action, why = waits
            return PlanRow(
                index, number, cell_id, code.first_line, action, (why,), _seconds(latest)
            )
        self.codes.add(code.code_digest)
        decision = decide(
            readout,
            options,
            self.namespace,
            self.cache,
            identity=identity,
            look=Look.PLANNED,
            restored=self.drifted,
        )
        return self._decided(index, cell_id, source, options, decision, latest)

    def _waits(
        self,
        index: int,
        identity: str,
        code: CellCode,
        latest: LatestRun | None,
        source: str,
    ) -> tuple[Literal["run", "depends"], str] | None:
        """A cell that reads what an earlier cell computes again: its key is unknown until
        that cell has run, so it runs, or restores if that comes out as before; it runs
        for certain when no entry can be its."""
        for read_name in code.reads:
            if read_name not in self.unknown:
                continue
            cell, outside = self.unknown[read_name]
            how = "computes outside the cache" if outside else "runs again"
            self._unknown_after(index, {*code.binds, *_vars(latest)}, source=source)
            said = f"it reads `{read_name}`, which cell {self.numbers[cell]} {how}"
            new = self._new(identity, listed_line(code), code.code_digest)
            self.codes.add(code.code_digest)
            self._executes(index, source)
            if new:
                return "run", f"{said}, and it never ran with this store"
            return "depends", f"{said} (it restores instead if `{read_name}` comes out as before)"
        return None

    def _decided(
        self,
        index: int,
        cell_id: str | None,
        source: str,
        options: CellOptions,
        decision: Decision,
        latest: LatestRun | None,
    ) -> PlanRow:
        """The row of a cell the decision was taken for, what it binds bound as the run
        will bind it, or unknown."""
        assert decision.code is not None
        number, first, seconds = self.numbers[index], decision.code.first_line, _seconds(latest)
        if decision.hit is not None and decision.restores:
            self._bind(decision)
            if self.waiting is None and deferred(decision.hit.info.meta):
                self.waiting = index
            age = format_duration(max(0.0, time.time() - decision.hit.info.created))
            why = f"its key matches the entry stored {age} ago"
            took = decision.hit.info.compute_seconds
            return PlanRow(index, number, cell_id, first, "restore", (why,), took, decision.action)
        binds = decision.code.binds
        if decision.action == "run-memory" and latest is not None:
            # it runs, and its last run says what it binds
            for bound, recorded in latest.digests.items():
                self.namespace[bound] = StandIn("", bound, recorded, {})
                self.unknown.pop(bound, None)
            for deleted in latest.deleted:
                self.namespace.pop(deleted, None)
        elif decision.run is None:
            self._unknown_after(index, binds, outside=True, source=source)
        else:
            self._unknown_after(index, {*binds, *_vars(latest)}, source=source)
        unsettled = self.unsettled
        if decision.action != "run-memory":  # a cell kept in memory changed nothing outside
            self._executes(index, source)
        stale = decision.run is not None and decision.run.unchanged.stale
        earlier = unsettled if unsettled is not None else self.waiting
        if stale and not options.force and earlier is not None:
            # the entry's outside state differs from the plan's, which lacks what cell
            # `earlier` does when it runs, or its imports: they may set it as it was
            does = f"cell {self.numbers[earlier]} runs before it"
            if unsettled is None:
                does = f"the imports of cell {self.numbers[earlier]} are made before it"
            reasons = (*decision.reasons, f"{does} and may set that as it was (it restores then)")
            return PlanRow(index, number, cell_id, first, "depends", reasons, seconds, "run")
        action = decision.action
        return PlanRow(index, number, cell_id, first, "run", decision.reasons, seconds, action)

    def _executes(self, index: int, source: str) -> None:
        """Cell ``index`` runs (or may): a ``%matplotlib`` magic in it is replayed, and
        anything in it but imports and such magics may change the outside state."""
        replay = _settles(source)
        if replay is None:
            if self.unsettled is None:
                self.unsettled = index
            return
        if self.matplotlib is not None:
            for argument in replay:
                self.matplotlib(argument)
        elif replay and self.unsettled is None:
            self.unsettled = index

    def _bind(self, decision: Decision) -> None:
        """Bind what a restore binds, as the run would."""
        hit = decision.hit
        assert hit is not None
        if decision.action == "restore-header" and decision.recorded is not None:
            stand_ins(hit.info.key, decision.recorded, self.namespace)
            names = list(decision.recorded.vars)
        else:
            entry = CellEntry.read(hit.value)
            if entry is None:  # the decision restores only what reads as an entry
                return
            put_back(entry, self.namespace)
            self.drifted.update(drifted(entry, self.namespace))  # as the run does
            names = list(entry.vars)
        for name in names:
            self.unknown.pop(name, None)

    def _unknown_after(
        self, index: int, names: Any, *, outside: bool = False, source: str = ""
    ) -> None:
        """What cell ``index`` binds is unknown until it has run, except a module it
        imports (``source`` says which): the run binds the very module the plan can
        import now, so later keys that hash it are known."""
        imported = _imports(source)
        for name in names:
            module = imported.get(str(name))
            if module is not None:
                self.namespace[str(name)] = module
                self.unknown.pop(str(name), None)
                continue
            self.unknown[str(name)] = (index, outside)
            self.namespace.pop(str(name), None)

    def _body(self, raw: str) -> str:
        """A cell magic's body (``%%time``) as Python, or "" when it is not Python."""
        body = raw.strip().split("\n", 1)[1] if "\n" in raw.strip() else ""
        try:
            return self.transform(body)
        except Exception:  # noqa: BLE001 - a body IPython cannot transform binds nothing known
            return ""


# Cell magics whose body is no Python the kernel runs: they change nothing a key reads.
_NOT_PYTHON = frozenset({"javascript", "js", "html", "markdown", "latex", "svg"})


def _settles(source: str) -> list[str] | None:
    """The arguments of the ``%matplotlib`` magics of ``source`` (as IPython transformed
    it) when it does nothing else but import; None when it does more, which may change
    the outside state."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    out = []
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            continue
        call = statement.value if isinstance(statement, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run_line_magic"
            and len(call.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args)
            and call.args[0].value == "matplotlib"  # type: ignore[attr-defined]
        ):
            out.append(str(call.args[1].value))  # type: ignore[attr-defined]
            continue
        return None
    return out


def _binds(source: str) -> frozenset[str]:
    """What ``source`` binds, if it is Python (``%%time``'s body); else nothing."""
    try:
        return analyze(source).binds
    except Exception:  # noqa: BLE001 - not Python (%%bash): it binds nothing we know of
        return frozenset()


def _imports(source: str) -> dict[str, Any]:
    """The names ``source``'s top level binds by importing an installed module and by
    nothing else, imported now: what the same statements bind when the cell runs. A
    name bound in any other way, an import under ``if`` or ``try``, a module of the
    notebook's folder or one that fails to import stays unknown."""
    if "import" not in source:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    wanted: dict[str, tuple[str, str | None]] = {}
    other: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname:
                    wanted[alias.asname] = (alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    wanted[top] = (top, None)
        elif isinstance(statement, ast.ImportFrom) and not statement.level and statement.module:
            for alias in statement.names:
                if alias.name != "*":
                    wanted[alias.asname or alias.name] = (statement.module, alias.name)
        else:
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                    other.add(node.id)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    other.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    other.update((a.asname or a.name).split(".")[0] for a in node.names)
    out: dict[str, Any] = {}
    for name, (module, attribute) in wanted.items():
        if name in other:
            continue
        value = _installed(module, attribute)
        if value is not None:
            out[name] = value
    return out


def _installed(module: str, attribute: str | None) -> Any:
    """``module`` (or its ``attribute``) when it is installed code, imported; else None."""
    try:
        imported = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - the run will say why it fails; the plan knows nothing
        return None
    if is_local_module(imported.__name__):
        return None  # the notebook's own module: its code may change between runs
    if attribute is None:
        return imported
    value = getattr(imported, attribute, None)
    if value is None and "." not in attribute:
        try:
            value = importlib.import_module(f"{module}.{attribute}")
        except Exception:  # noqa: BLE001 - no such submodule: unknown
            return None
    return value


def _explicit_cache(text: str) -> tuple[str | None, bool, list[str], str] | None:
    """A ``%%cache`` cell of the notebook: its name, -f, --ignore and its body; None
    for any other cell. Its other options say how it shows or where it runs, not
    whether it restores."""
    line, _, body = text.partition("\n")
    words = line.split()
    if not words or words[0] != "%%cache":
        return None
    try:
        parts = shlex.split(line)[1:]
    except ValueError:
        parts = words[1:]
    name, force, ignore = None, False, []
    for i, part in enumerate(parts):
        if part in ("-n", "--name") and i + 1 < len(parts):
            name = parts[i + 1]
        elif part in ("-f", "--force"):
            force = True
        elif part == "--ignore":
            for value in parts[i + 1 :]:
                if value.startswith("-"):
                    break
                ignore.append(value)
    return name, force, ignore, body


def _seconds(latest: LatestRun | None) -> float | None:
    return latest.seconds if latest is not None else None


def _vars(latest: LatestRun | None) -> list[str]:
    return list(latest.digests) if latest is not None else []
