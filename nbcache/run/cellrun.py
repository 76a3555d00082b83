"""One run of a cached cell, as data: its options, what the body made, and how that is
gathered into an entry, validated on the next look and put back on a hit."""

from __future__ import annotations

import ast
import importlib
import io
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..cache.core import Ask, Hit
from ..entry.format import EntryInfo
from ..entry.pickling import probe
from ..errors import CacheError, KeyPicklingError, ValuePicklingError, warn
from ..keys.classes import describe
from ..keys.code import code_reached, is_code
from ..keys.hashing import digest
from ..keys.scope import CellCode, CellKey, changed_names
from ..keys.standin import StandIn
from .effects import Effects, only_imports, registered, seeds_first
from .effects import apply as apply_effects
from .effects import stale as stale_inputs
from .files import FileReads, Written
from .modstate import held_by_module
from .output import NO_RESULT, MemoryOnly, OutputLog
from .records import CellEntry, EntryInputs
from .report import CellReport
from .sharing import aliases, sharers, sharing

__all__ = [
    "CellOptions",
    "CellRun",
    "Made",
    "ModuleRef",
    "NotStored",
    "RunsAlways",
    "Unchanged",
    "bring_back",
    "closed_file",
    "computed",
    "drifted",
    "entry_of",
    "failure",
    "gathered",
    "intact",
    "meta_of",
    "patches_outside",
    "put_back",
    "restored",
    "result_of",
    "storable",
    "unpicklable_message",
]

VALUE_NAME = "the cell's variables"
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|CREDENTIAL|(^|_)KEY$", re.IGNORECASE)


@dataclass(frozen=True)
class CellOptions:
    """The parsed options of one ``%%cache`` line."""

    name: str | None = None
    force: bool = False
    store: bool = True
    max_age: float | None = None
    ignore: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()
    pin: bool = False
    quiet: bool = False
    background: bool = False
    # where a background cell runs: "thread", "process", "dask"; None: nbcache.configure's
    executor: str | None = None
    # checkpoints of a progress loop: "auto" (cost-aware), "off", or seconds between two
    checkpoint: str | float = "auto"
    # auto mode wrapped this cell (``%nbcache auto``): its store rule and outcome log apply
    auto: bool = False


@dataclass(frozen=True)
class CellRun:
    """One cell about to run: its code, key and name, its options, how it is looked up."""

    code: CellCode
    key: CellKey
    identity: str
    options: CellOptions
    unchanged: Unchanged
    ask: Ask


class Unchanged:
    """Validates an entry by what it was computed from outside its key: the files it read
    and the outside state it depended on; keeps what changed, for why."""

    def __init__(self, waiting: Callable[[], object] | None = None) -> None:
        self.stale: list[str] = []
        # a lazy run's imports restored cells left waiting, made before the outside state
        # is read while a module it lives in is not loaded: a plain run's imports had set
        # it (matplotlib's settings once pyplot was imported in a kernel)
        self.waiting = waiting

    def __getstate__(self) -> dict[str, Any]:
        # a run sent to a worker process: the hook is this kernel's, and holds its shell
        return {**vars(self), "waiting": None}

    def __call__(self, info: EntryInfo) -> bool:
        inputs = EntryInputs.of_meta(info.meta)
        if inputs is None:
            self.stale = ["its entry's record of the files and settings it used does not read"]
            return False
        self.stale = FileReads(dict(inputs.files), dict(inputs.paths)).changed()
        if inputs.wrote:
            self.stale += Written(dict(inputs.wrote)).missing()
        # An entry with no outside inputs was made before any setting changed: it hits
        # only while none has changed (reading no state: this costs nothing).
        if (
            self.waiting is not None
            and inputs.outside
            and any(
                s.name in inputs.outside and s.module is not None and s.module not in sys.modules
                for s in registered()
            )
        ):
            self.waiting()
        self.stale += stale_inputs(inputs.outside)
        return not self.stale


@dataclass
class Made:
    """What one run of a cell body made, before it is stored."""

    namespace: dict[str, Any]
    before: dict[str, int]
    log: OutputLog
    result: Any
    seconds: float
    files: FileReads
    effects: Effects  # the outside state when the body started
    changes: dict[str, Any]  # what of it the body changed
    modules: list[str] = field(default_factory=list)  # module state it changed: mod.attr


@dataclass(frozen=True)
class ModuleRef:
    """A module bound by the cell (``import numpy as np``), stored by name."""

    name: str


# -- gathering, checking and putting back -------------------------------------------


def patches_outside(code: CellCode, namespace: Mapping[str, Any]) -> str | None:
    """The module, installed class or function whose attribute the cell sets or deletes
    (``textwrap.dedent = fake``, ``Colormap._repr_html_ = f``), or None. That change
    lives outside the namespace, so no restore could replay it: such a cell always
    runs, as without nbcache."""
    for root in code.attribute_roots:
        value = namespace.get(root)
        if isinstance(value, types.ModuleType):
            return root
        if type(value) is StandIn and value.imports:
            return root  # a library's module, function or class not imported yet
        code_like = isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType))
        if code_like and not is_code(value):
            return root
    return None


def closed_file(value: Any) -> bool:
    """``with open(...) as f`` leaves ``f`` bound to a closed file: nothing to restore."""
    return isinstance(value, io.IOBase) and value.closed


def storable(value: Any) -> Any:
    return ModuleRef(value.__name__) if isinstance(value, types.ModuleType) else value


def bring_back(value: Any) -> Any:
    return importlib.import_module(value.name) if isinstance(value, ModuleRef) else value


def _mutated(ck: CellKey, namespace: Mapping[str, Any], bound: list[str]) -> list[str]:
    """Inputs the cell changed in place: same object, different content."""
    changed = []
    for name, before in ck.input_digests.items():
        if name in bound or name not in namespace:
            continue
        try:
            if digest(namespace[name], name=name) != before:
                changed.append(name)
        except KeyPicklingError:
            continue
    return changed


def _digests(
    namespace: Mapping[str, Any], names: list[str]
) -> tuple[dict[str, str | None], list[str]]:
    """Each value's digest, and the names of those whose hashing reached no notebook
    code (see :func:`nbcache.keys.code.code_reached`)."""
    out: dict[str, str | None] = {}
    plain = []
    for name in names:
        before = code_reached()
        try:
            out[name] = digest(namespace[name], name=name)
        except KeyPicklingError:
            out[name] = None
        if code_reached() == before:
            plain.append(name)
    return out, plain


_ATOMS = (int, float, complex, str, bytes, bool, type(None))


def _keeps_digest(value: Any) -> bool:
    """Values pickling cannot change the digest of: arrays and frames (hashed by their
    buffers) and plain scalars. A list can: it holds objects that may not (a frozen
    scipy distribution comes back with a generator of its own)."""
    return isinstance(value, _ATOMS) or type(value).__module__.split(".")[0] in (
        "numpy",
        "pandas",
    )


def intact(value: Any) -> bool:
    """Whether live values kept in memory still hash as they did when stored."""
    entry = CellEntry.read(value)
    if entry is None:
        return False  # not an entry: load it again, the store's copy is checked then
    for name, expected in entry.digests.items():
        value = entry.vars.get(name)
        if expected is None or isinstance(value, ModuleRef):
            continue  # a module is kept by name: nothing in memory changes it (no import)
        try:
            if digest(value, name=name) != expected:
                return False
        except KeyPicklingError:
            return False
    return True


def unpicklable_message(value: Any, exc: ValuePicklingError) -> str:
    entry = CellEntry.read(value)
    variables = entry.vars if entry is not None else {}
    bad = [name for name, kept_value in variables.items() if probe(kept_value) is not None]
    what = ", ".join(f"`{n}` ({describe(variables[n])['type']})" for n in bad) or "output"
    reason = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    fix = f" `del {', '.join(bad)}` at the end of the cell to store the rest." if bad else ""
    return (
        f"nbcache: this cell's {what} cannot be pickled{reason}, so its result is kept in "
        f"memory only and the cell runs again after a restart.{fix}"
    )


class NotStored(CacheError):
    """The body ran, but what it made could not be gathered: nothing is stored."""


class RunsAlways(NotStored):
    """The body changed what no entry can bring back (a logging handler on a socket,
    an object a module holds): nothing is stored, so the cell runs every time, quietly;
    the message says why, for ``%nbcache why``."""


_MODULE_STATE = (
    "it changes `{}`, state held by a module, which no restore can bring back, so it "
    "runs every time (keep such changes in a cell of their own, or in the module itself)"
)


# What a cell shows while an ipywidgets Output captures goes, in the front end, into
# that widget, which lives only in the kernel that made it: replayed by a restore, it
# would show in the cell itself, beside a view of a widget no kernel holds.
_CAPTURED = (
    "it shows output inside a widget (an ipywidgets Output, as `interact` makes), which "
    "lives only in the kernel that made it, so it runs every time"
)


def gathered(code: CellCode, ck: CellKey, made: Made) -> CellEntry:
    """:func:`entry_of`, with any failure of ours turned into :class:`NotStored`."""
    if made.log.captured:
        raise RunsAlways(_CAPTURED)
    unrestorable = made.effects.unrestorable(made.changes)
    if unrestorable:
        raise RunsAlways(
            f"it changes {unrestorable[0]} to something that cannot be stored (a value that "
            "will not pickle, a handler that cannot be made again), so it runs every time"
        )
    if made.modules:
        raise RunsAlways(_MODULE_STATE.format(made.modules[0]))
    secret = [k for k in made.changes.get("os.environ", {}) if _SECRET_NAME.search(k)]
    if secret:
        raise NotStored(
            f"the cell sets the environment variable {secret[0]}, which looks like a secret; "
            "secrets are never written to the store, so the cell runs again next time."
        )
    try:
        return entry_of(code, ck, made)
    except RunsAlways:
        raise
    except Exception as exc:
        raise NotStored(
            f"the cell ran, but its variables could not be gathered for storing "
            f"({failure(exc)}); nothing is stored and it runs again next time."
        ) from exc


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def entry_of(code: CellCode, ck: CellKey, made: Made) -> CellEntry:
    """What is stored of a cell run: the variables it bound or mutated, the names it
    deleted, its outputs in order and its result."""
    namespace = made.namespace
    bound, deleted = changed_names(made.before, namespace, code.binds)
    mutated = _mutated(ck, namespace, bound)
    for name in mutated:
        held = held_by_module(namespace[name])
        if held is not None:
            raise RunsAlways(_MODULE_STATE.format(held))
    mutated += sharing(namespace, [*bound, *mutated])
    mutated += aliases(namespace, [*bound, *mutated])
    shared = sharers(namespace, [*bound, *mutated])
    mutated += shared
    names = sorted(n for n in {*bound, *mutated} if not closed_file(namespace[n]))
    digests, plain = _digests(namespace, names)
    return CellEntry(
        vars={name: storable(namespace[name]) for name in names},
        deleted=deleted,
        outputs=made.log.events,
        result=_result_kept(made.result),
        digests=digests,
        plain=plain,
        effects=made.changes,
        shared=shared,
        file_contents=made.files.written.contents,
        wrote=made.files.written.states,
    )


def _result_kept(result: Any) -> Any:
    """The result as the entry keeps it: itself, or, when it will not pickle (a seaborn
    plot holding a vectorized ufunc), live in memory only; its shown output is kept."""
    if result is NO_RESULT or result is None or probe(result) is None:
        return result
    return MemoryOnly(result)


def result_of(entry: CellEntry) -> Any:
    """A stored entry's result: the live value, or :data:`UNSTORED` from the store."""
    result = entry.result
    return result.value if isinstance(result, MemoryOnly) else result


def listed_line(code: CellCode) -> str:
    """The line listings show for a cell: its first statement that is not an import
    (``import nbcache`` says nothing of what the cell makes); its first line when the
    cell only imports."""
    try:
        body = ast.parse(code.source).body
    except SyntaxError:
        return code.first_line
    lines = code.source.splitlines()
    for node in body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            return lines[node.lineno - 1].strip()[:80] or code.first_line
    return code.first_line


def meta_of(run: CellRun, made: Made, entry: CellEntry) -> dict[str, Any]:
    """The signed metadata of a cell's entry: for listings, ``why`` and its file checks."""
    code, options = run.code, run.options
    return {
        "label": options.name or code.first_line,
        "identity": run.identity,
        "summary": run.key.summary,
        **EntryInputs(
            made.files.states,
            made.files.paths,
            made.files.written.states,
            made.effects.inputs(
                made.changes,
                seeded=seeds_first(code.source) or only_imports(code.source),
                drew=_drew(made.log),
            ),
        ).stored(),
        "vars": list(entry.vars),
        "compute_seconds": made.seconds,
        "pinned": options.pin,
        "kind": "cell",
        "first_line": listed_line(code),
    }


def _drew(log: OutputLog) -> bool:
    """Whether the cell showed a picture (so matplotlib's settings shaped it)."""
    return any(
        event[0] == "display" and any(str(kind).startswith("image/") for kind in event[1])
        for event in log.events
    )


def put_back(
    entry: CellEntry, namespace: dict[str, Any], standing: Mapping[str, Any] | None = None
) -> None:
    """A hit: the stored variables into ``namespace``, deleted names out of it, and the
    outside state as the run left it. ``standing`` holds stand-ins for modules not to
    import now (see :func:`nbcache.run.lazy.import_stand_ins`)."""
    standing = standing or {}
    for name, value in entry.vars.items():
        namespace[name] = standing[name] if name in standing else bring_back(value)
    for name in entry.deleted:
        namespace.pop(name, None)
    if entry.wrote:
        # before the effects: the paths are relative to where the cell started
        Written(dict(entry.wrote)).put_back(dict(entry.file_contents))
    failed = apply_effects(entry.effects)
    if failed:
        warn(
            f"nbcache: {failed[0]} could not be set back as the cell left it (a library "
            "missing here, a folder that is gone); later cells may differ from a plain "
            "run: run this cell with -f.",
            stacklevel=4,
        )


def drifted(entry: CellEntry, namespace: Mapping[str, Any]) -> dict[str, tuple[Any, str, str]]:
    """Restored values whose digest now differs from the one recorded when they were made:
    ``name -> (value, digest now, digest then)``. Arrays and frames hash by their
    buffers, which pickling keeps, so they are not hashed again here."""
    out = {}
    for name, recorded in entry.digests.items():
        value = namespace.get(name)
        if recorded is None or value is None or _keeps_digest(value):
            continue
        try:
            now = digest(value, name=name)
        except Exception:  # noqa: BLE001 - a value that will not hash keeps its own rules
            continue
        if now != recorded:
            out[name] = (value, now, recorded)
    return out


def restored(hit: Hit[Any], names: Iterable[str]) -> CellReport:
    """The report of a hit that restored ``names``."""
    return CellReport(
        "restored",
        tuple(names),
        hit.load_seconds,
        hit.size,
        hit.source,
        hit.info.compute_seconds,
        hit.info.created,
    )


def computed(names: list[str], seconds: float, size: int, options: CellOptions) -> CellReport:
    where: Literal["store", "memory", "no-store"] = "store" if size else "memory"
    return CellReport(
        "computed", tuple(names), seconds, size, where if options.store else "no-store"
    )
