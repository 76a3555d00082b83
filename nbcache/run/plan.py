"""A plan before running: for each cell of a notebook, restore or run, and why, without
executing any cell body.

The plan walks the cells as a whole-notebook run in a fresh kernel would, in a
scratch namespace: each cell's key is computed from what the cells before it
bound. A hit binds its values as the run would (stand-ins from the signed
header, or the entry itself when it binds code or modules, which is loaded but
not run). A cell kept in memory only because it is cheap runs, but its last
run recorded the digests of what it bound, so the keys after it are still
known. A cell that misses runs, and what it binds is unknown until it has:
the cells that read it run too, unless its values come out as before (the plan
says so; it never says restore for a cell that then runs).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..cache.core import Ask, Cache, Hit
from ..cache.lru import LRU
from ..entry.pickling import restoring_into
from ..errors import KeyPicklingError
from ..keys.calls import explain
from ..keys.recorded import Recorded
from ..keys.scope import CellCode, analyze, cell_key
from ..units import format_duration
from .auto import wraps
from .cellrun import VALUE_NAME, Unchanged, intact, patches_outside, put_back
from .effects import Effects, restore_state
from .lazy import restorable, stand_ins
from .records import CellEntry, LatestRun

__all__ = ["PlanRow", "plan"]


@dataclass(frozen=True)
class PlanRow:
    """What a run would do with one cell."""

    index: int  # among the cells planned
    number: int  # as the reader counts the cell
    cell_id: str | None
    first_line: str
    action: Literal["restore", "run"]
    reasons: tuple[str, ...]
    seconds: float | None = None  # how long its body took the last time it ran

    def line(self) -> str:
        took = f" ({format_duration(self.seconds)})" if self.seconds is not None else ""
        why = "; ".join(self.reasons)
        return f"cell {self.number} `{self.first_line}`: {self.action}{took}: {why}"


def plan(
    cells: Sequence[tuple[str | None, str]],
    cache: Cache,
    transform: Callable[[str], str],
    initial: Mapping[str, Any] | None = None,
    numbers: Sequence[int] | None = None,
) -> list[PlanRow]:
    """The plan of running ``cells`` (``(cell id, source as typed)``) in order in a fresh
    kernel in auto mode, against ``cache``; ``initial`` is what a fresh kernel's
    namespace holds (IPython puts its own ``open`` there, which keys hash). The outside
    state (random generators, matplotlib's settings) is as it was afterwards:
    restoring an entry applies its. ``numbers`` are the cells' numbers as the reader
    counts them (in a notebook with Markdown cells); default 1, 2, 3..."""
    walk = _Walk(cache, transform)
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
    def __init__(self, cache: Cache, transform: Callable[[str], str]) -> None:
        self.cache = cache
        self.transform = transform
        self.namespace: dict[str, Any] = {}
        self.unknown: dict[str, tuple[int, bool]] = {}  # name -> (cell, run outside the cache)
        self.rows: list[PlanRow] = []
        self.numbers: list[int] = []

    def row(self, index: int, cell_id: str | None, raw: str) -> PlanRow | None:
        text = raw.strip()
        if not text:
            return None  # an empty cell is not run
        first = text.splitlines()[0][:80]
        explicit = _explicit_cache(text)
        if explicit is not None:
            name, force, ignore, body = explicit
            if force:
                self._unknown_after(index, self._body_binds(raw))
                forced = ("it is run with -f",)
                return PlanRow(index, self.numbers[index], cell_id, first, "run", forced)
            return self._cell(index, cell_id, body, name, tuple(ignore))
        if not wraps(raw):
            magic = first.split()[0] if first.startswith("%%") else "await"
            self._unknown_after(index, self._body_binds(raw), outside=True)
            why = (
                f"it begins with {magic}, so it runs as without nbcache"
                if magic != "await"
                else "it awaits at its top level, so it runs as without nbcache"
            )
            return PlanRow(index, self.numbers[index], cell_id, first, "run", (why,))
        return self._cell(index, cell_id, raw, None, ())

    def _cell(
        self, index: int, cell_id: str | None, raw: str, name: str | None, ignore: tuple[str, ...]
    ) -> PlanRow:
        """The row of a cell %%cache runs: from auto mode (``name`` None) or the notebook's."""
        first = raw.strip().splitlines()[0][:80] if raw.strip() else ""
        try:
            code = analyze(self.transform(raw))
        except SyntaxError:
            return PlanRow(
                index, self.numbers[index], cell_id, first, "run", ("it does not parse",)
            )
        if code.uses_shell:  # its own first line, not IPython's call of the magic
            self._unknown_after(index, code.binds, outside=True)
            why = "it calls IPython (a line magic, a shell escape), so it always runs"
            return PlanRow(index, self.numbers[index], cell_id, first, "run", (why,))
        patched = patches_outside(code, self.namespace)
        if patched is not None:
            self._unknown_after(index, code.binds, outside=True)
            why = f"it sets an attribute of `{patched}`, outside the namespace, so it always runs"
            return PlanRow(index, self.numbers[index], cell_id, first, "run", (why,))
        first = code.first_line
        identity = name or cell_id or f"cell: {first}"
        latest = LatestRun.read(self.cache.latest(identity))
        seconds = _seconds(latest)
        for name in code.reads:
            if name in self.unknown:
                cell, outside = self.unknown[name]
                how = "computes outside the cache" if outside else "runs again"
                self._unknown_after(index, {*code.binds, *_vars(latest)})
                why = (
                    f"it reads `{name}`, which cell {self.numbers[cell]} {how} "
                    f"(it restores instead if `{name}` comes out as before)"
                )
                return PlanRow(index, self.numbers[index], cell_id, first, "run", (why,), seconds)
        return self._keyed(index, cell_id, code, identity, latest, seconds, ignore)

    def _keyed(
        self,
        index: int,
        cell_id: str | None,
        code: CellCode,
        identity: str,
        latest: LatestRun | None,
        seconds: float | None,
        ignore: tuple[str, ...] = (),
    ) -> PlanRow:
        first = code.first_line
        try:
            ck = cell_key(code, self.namespace, identity=identity, ignore=ignore)
        except KeyPicklingError as exc:
            self._unknown_after(index, code.binds, outside=True)
            return PlanRow(
                index,
                self.numbers[index],
                cell_id,
                first,
                "run",
                (f"it runs uncached: {exc}",),
                seconds,
            )
        unchanged = Unchanged()
        # As a fresh kernel would: what this kernel keeps in memory does not count.
        ask = Ask(name=VALUE_NAME, validate=unchanged, fresh=intact, remember=False, memory=LRU(1))
        hit = self.cache.peek(ck.key, ask=ask, count=False)  # a plan is no use of it
        if hit is not None and self._bind(hit, ask):
            age = format_duration(max(0.0, time.time() - hit.info.created))
            why = f"its key matches the entry stored {age} ago"
            return PlanRow(
                index,
                self.numbers[index],
                cell_id,
                first,
                "restore",
                (why,),
                hit.info.compute_seconds,
            )
        if (
            latest is not None
            and latest.key == ck.key
            and not latest.stored
            and not unchanged.stale
        ):
            # Cheap, kept in memory only: it runs, and its last run says what it binds.
            for name, recorded in latest.digests.items():
                self.namespace[name] = Recorded("", name, recorded, {})
                self.unknown.pop(name, None)
            for name in latest.deleted:
                self.namespace.pop(name, None)
            why = "running it is cheaper than storing and loading it; what it binds is known"
            return PlanRow(index, self.numbers[index], cell_id, first, "run", (why,), seconds)
        self._unknown_after(index, {*code.binds, *_vars(latest)})
        # named as the reader knows it: its -n name, else its first code line, not its id
        label = first if identity in (cell_id, f"cell: {first}") else identity
        before = latest.summary if latest is not None else None
        reasons = list(unchanged.stale) or explain(before, ck.summary, label=label)
        return PlanRow(index, self.numbers[index], cell_id, first, "run", tuple(reasons), seconds)

    def _bind(self, hit: Hit[Any], ask: Ask) -> bool:
        """Bind what a hit binds, as the run would; False if it cannot be read after all."""
        recorded = restorable(hit.info.meta) if hit.source == "store" else None
        if recorded is not None:  # as the run decides
            stand_ins(hit.info.key, recorded, self.namespace)
            names = list(recorded.vars)
        else:
            full: Hit[Any] | None = hit
            if hit.value is None:
                full = self.cache.lookup(hit.info.key, ask=ask, count=False)
            entry = CellEntry.read(full.value) if full is not None else None
            if entry is None:
                return False
            put_back(entry, self.namespace)
            names = list(entry.vars)
        for name in names:
            self.unknown.pop(name, None)
        return True

    def _unknown_after(self, index: int, names: Any, *, outside: bool = False) -> None:
        for name in names:
            self.unknown[str(name)] = (index, outside)
            self.namespace.pop(str(name), None)

    def _body_binds(self, raw: str) -> frozenset[str]:
        """What a cell magic's body binds, if it is Python (``%%time``); else nothing."""
        body = raw.strip().split("\n", 1)[1] if "\n" in raw.strip() else ""
        try:
            return analyze(self.transform(body)).binds
        except Exception:  # noqa: BLE001 - not Python (%%bash): it binds nothing we know of
            return frozenset()


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
