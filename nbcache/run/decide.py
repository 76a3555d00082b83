"""What happens to a cell, and why: the one decision that ``%%cache``, background cells,
auto mode, ``nbcache run`` and the plan all take.

A cell that cannot be read or keyed runs uncached, as without nbcache; one that
patches installed code (``mod.f = g``) always runs, since no restore replays a
change outside the namespace; otherwise its key is looked up. A hit restores: the
whole entry, or, in a whole-notebook run, stand-ins from its signed header. A
miss runs; once it has, auto mode's store rule says whether its entry is stored
or kept in memory only.

The plan takes the same decision without running anything, against the cache as
a fresh kernel would see it (:attr:`Look.PLANNED`): nothing in this kernel's
memory counts, no use is counted, and a cell kept in memory only by its last
run says so (``run-memory``), with the digests of what it bound known from that
run's record.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..cache.core import Ask, Cache, Hit
from ..cache.lru import LRU
from ..entry.format import EntryInfo
from ..entry.pickling import restoring_into
from ..errors import KeyPicklingError
from ..keys import LiveHandleError, drawn_on
from ..keys.calls import explain, uncached_reason
from ..keys.scope import CellCode, analyze, cell_key
from .cellrun import (
    VALUE_NAME,
    CellOptions,
    CellRun,
    Unchanged,
    failure,
    intact,
    patches_outside,
    unpicklable_message,
)
from .lazy import restorable
from .records import CellEntry, HeaderRecord, LatestRun

__all__ = ["FORCED", "Action", "Decision", "Look", "decide", "prepare", "read"]

Action = Literal["restore", "restore-header", "run", "run-memory", "uncached", "always"]
"""``restore``: the whole entry comes back; ``restore-header``: stand-ins from the
signed header, values loaded only when a running cell needs them; ``run``: the body
runs and what it made is kept; ``run-memory``: the body runs, its last run was kept
in memory only (a plan knows what it binds from that run's record); ``uncached``:
it runs as without nbcache; ``always``: it runs every time, by what it does."""

FORCED = "the cell was run with -f/--force"
MEMORY_ONLY = "running it is cheaper than storing and loading it; what it binds is known"
# How a plan reads: as a fresh kernel would (what this kernel keeps in memory does not
# count), and a plan is no use of an entry.
_PLANNED = Ask(name=VALUE_NAME, fresh=intact, remember=False, count_uses=False)


class Look(enum.Enum):
    """How a decision reads the cache."""

    FULL = "full"  # a cell run: the whole entry, from memory or the store
    HEADER = "header"  # a whole-notebook run: a stored hit restores from its header
    PLANNED = "planned"  # a plan: as a fresh kernel would see it; nothing counted


@dataclass(frozen=True)
class Decision:
    """What happens to one cell, and why (in the words of ``%nbcache why``)."""

    action: Action
    identity: str  # what the cell's entries and ``why`` are filed under
    reasons: tuple[str, ...] = ()
    code: CellCode | None = None  # None: it does not parse
    run: CellRun | None = None  # its key and how it is read: set once it was keyed
    hit: Hit[Any] | None = None  # a restore's hit (its value None from a header)
    recorded: HeaderRecord | None = None  # a header restore's record
    warning: str | None = None  # one line the shell shows as a warning

    @property
    def restores(self) -> bool:
        return self.action in ("restore", "restore-header")


def read(source: str, namespace: Mapping[str, Any], *, identity: str) -> Decision:
    """The cell read (``action`` ``run``, its code set), or why it runs without a key:
    it does not parse, it calls IPython, it reads IPython's history, it patches
    installed code."""
    try:
        code = analyze(source)
    except SyntaxError:
        return Decision("uncached", identity, ("it does not parse, so Python runs it as it is",))
    except Exception as exc:  # noqa: BLE001 - a cell we cannot read runs as Python runs it
        return Decision(
            "uncached",
            identity,
            (f"nbcache could not read it ({failure(exc)})",),
            warning=f"nbcache: cannot read this cell ({failure(exc)}); it runs uncached.",
        )
    if code.uses_shell:
        why = (
            "it calls IPython (a line magic or a shell escape), which acts outside the "
            "namespace, so it runs every time"
        )
        return Decision("uncached", identity, (why,), code)
    if code.history_reads:
        why = (
            f"it reads IPython's history (`{code.history_reads[0]}`), which holds what the "
            "cells run before it gave and which no key can hold, so it runs every time"
        )
        return Decision("uncached", identity, (why,), code)
    patched = patches_outside(code, namespace)
    if patched is not None:
        why = (
            f"it sets an attribute of `{patched}`, outside the namespace, which no "
            "restore can replay, so it runs every time (move the patch to a cell of "
            "its own to cache the rest)"
        )
        return Decision("always", identity, (why,), code)
    return Decision("run", identity, (), code)


def prepare(
    source: str | Decision,
    options: CellOptions,
    namespace: Mapping[str, Any],
    *,
    identity: str,
    look: Look = Look.FULL,
    restored: Mapping[str, tuple[Any, str, str]] | None = None,
    admit: Callable[[Any, int, float], bool] | None = None,
    waiting: Callable[[], object] | None = None,
) -> Decision:
    """The cell read (``source``, or what :func:`read` made of it) and keyed, not yet
    looked up (``action`` ``run``, its ``run`` set), or why it runs without its key.
    ``waiting`` makes a lazy run's waiting imports (see ``Unchanged``)."""
    readout = read(source, namespace, identity=identity) if isinstance(source, str) else source
    code = readout.code
    if readout.action != "run" or code is None:
        return readout
    try:
        ck = cell_key(
            code, namespace, ignore=options.ignore, identity=identity, restored=restored or {}
        )
    except LiveHandleError as exc:
        # A figure, an axes or a widget has no content to key, and drawing on it again is
        # what the user expects: such a cell runs as without the magic, quietly.
        quiet = drawn_on(exc)
        return Decision(
            "uncached",
            identity,
            (uncached_reason(exc),),
            code,
            warning=None if quiet else f"nbcache: {exc}",
        )
    except KeyPicklingError as exc:
        return Decision(
            "uncached", identity, (uncached_reason(exc),), code, warning=f"nbcache: {exc}"
        )
    except Exception as exc:  # noqa: BLE001 - a key that cannot be built: run uncached
        return Decision(
            "uncached",
            identity,
            (f"its key could not be built ({failure(exc)})",),
            code,
            warning=f"nbcache: cannot build this cell's key ({failure(exc)}); it runs uncached.",
        )
    unchanged = Unchanged(waiting)
    if look is Look.PLANNED:
        ask = replace(_PLANNED, validate=unchanged, memory=LRU(1))
    else:
        ask = Ask(
            persist=options.store,
            max_age=options.max_age,
            name=VALUE_NAME,
            validate=unchanged,
            fresh=intact,
            unpicklable=unpicklable_message,
            admit=admit,
        )
    run = CellRun(code, ck, identity, options, unchanged, ask)
    return Decision("run", identity, (), code, run)


def decide(
    source: str | Decision,
    options: CellOptions,
    namespace: dict[str, Any],
    cache: Cache,
    *,
    identity: str,
    look: Look = Look.FULL,
    restored: Mapping[str, tuple[Any, str, str]] | None = None,
    admit: Callable[[Any, int, float], bool] | None = None,
    before: Mapping[str, Any] | None = None,
    waiting: Callable[[], object] | None = None,
) -> Decision:
    """What happens to ``source`` (or what :func:`read` made of it) run with ``options``
    in ``namespace`` against ``cache``.

    ``before`` is the key summary a miss is explained against (the cell's last run in
    this session); default, the cache's record of its latest run.
    """
    prepared = prepare(
        source,
        options,
        namespace,
        identity=identity,
        look=look,
        restored=restored,
        admit=admit,
        waiting=waiting,
    )
    run = prepared.run
    if run is None:
        return prepared
    if not options.force:
        # notebook code a full restore unpickles may run (a set's ``__hash__``) and read
        # a module whose import waits
        with restoring_into(namespace, before_code=waiting):
            found = _look(cache, run, look)
        if found is not None:
            return found
    return _missed(prepared, run, cache, look, before)


def _look(cache: Cache, run: CellRun, look: Look) -> Decision | None:
    """A restore, if the key hits as ``look`` reads the cache."""
    key, ask = run.key.key, run.ask
    if look is Look.FULL:
        full = cache.lookup(key, ask=ask)
    else:
        # An entry its header cannot restore (it binds notebook code) is loaded whole
        # from the same open file.
        header = _Header()
        hit = cache.peek(key, ask=ask, whole=header.whole)
        if hit is None:
            # nothing stored under the key that checks out, and nothing in memory: a
            # full lookup would open the same file, or find none, again
            return None
        if hit.source == "memory" and CellEntry.read(hit.value) is None:
            # a value in memory that is no cell's entry: as a full lookup finds it (the
            # lookup counts its use)
            full = cache.lookup(key, ask=ask)
        else:
            # the hit itself is used: its use is counted here, once (a plan's ask counts
            # none), whether its header restores it or its value does
            if ask.count_uses:
                cache.ledger.count_use(hit.info.key, hit.info)
            recorded = header.record(hit.info) if hit.source == "store" else None
            if recorded is not None:
                return Decision("restore-header", run.identity, (), run.code, run, hit, recorded)
            if hit.source == "memory":
                return Decision("restore", run.identity, (), run.code, run, hit)
            full = hit  # loaded whole from the store
    if full is None or CellEntry.read(full.value) is None:
        return None  # a value that is no cell's entry (forged, of another shape): a miss
    return Decision("restore", run.identity, (), run.code, run, full)


class _Header:
    """A peeked entry's header record, read once: whether the peek loads the value too
    (the header cannot restore it), then the record a restore from it uses."""

    def __init__(self) -> None:
        self.info: EntryInfo | None = None
        self.recorded: HeaderRecord | None = None

    def whole(self, info: EntryInfo) -> bool:
        self.info, self.recorded = info, restorable(info.meta)
        return self.recorded is None

    def record(self, info: EntryInfo) -> HeaderRecord | None:
        return self.recorded if info is self.info else restorable(info.meta)


def _missed(
    prepared: Decision,
    run: CellRun,
    cache: Cache,
    look: Look,
    before: Mapping[str, Any] | None,
) -> Decision:
    """A miss, and why: forced, an input outside its key changed, or what differs from
    the run it is compared with."""
    if run.options.force:
        return Decision("run", run.identity, (FORCED,), run.code, run)
    if run.unchanged.stale:
        return Decision("run", run.identity, tuple(run.unchanged.stale), run.code, run)
    latest = LatestRun.read(cache.latest(run.identity))
    if (
        look is Look.PLANNED
        and latest is not None
        and latest.key == run.key.key
        and not latest.stored
    ):
        return Decision("run-memory", run.identity, (MEMORY_ONLY,), run.code, run)
    # a cell that last ran uncached noted only its time: no summary to compare with
    compared = before if before is not None else (latest.summary or None) if latest else None
    reasons = explain(compared, run.key.summary, label=_label(run))
    return Decision("run", run.identity, tuple(reasons), run.code, run)


def _label(run: CellRun) -> str:
    """A cell as ``why`` names it: its ``-n`` name, else its first code line, never the
    id a front end filed it under."""
    return run.options.name or run.code.first_line
