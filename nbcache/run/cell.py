"""``%%cache`` without IPython: look a cell up, or run it and keep what it made.

A hit puts the stored variables back, replays the cell's output and returns
its result; a miss runs the body (live output still shows), then stores the
variables it bound or mutated, its output and its result.  Every fault turns
into one warning: the cell itself always runs or restores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..cache.core import Ask, Cache, Hit, Start
from ..entry.pickling import restoring_into
from ..errors import warn
from ..keys.calls import IMPORTS_ONLY, NOCACHE, label_of, restored_reason, unknown_name
from ..keys.scope import CellCode
from ..tasks.task import Task
from . import background
from .auto import AutoMode
from .cellrun import (
    VALUE_NAME,
    CellOptions,
    CellRun,
    Made,
    NotStored,
    RunsAlways,
    computed,
    drifted,
    gathered,
    meta_of,
    put_back,
    restored,
    result_of,
)
from .decide import Decision, Look, decide
from .effects import only_imports
from .lazy import header_records, needed, pending, reaches_libraries, stand_ins, swap_in
from .lazyimports import Waiting, import_stand_ins
from .naming import by_interest
from .output import NO_RESULT, UNSTORED, OutputLog, hides_result, shows_result
from .plan import PlanRow, plan
from .recorded import run_recorded
from .records import CellEntry, HeaderRecord, LatestRun
from .report import CellReport
from .setupmagics import reads_namespace, split_setup
from .shell import Shell

__all__ = ["CellOptions", "CellRunner", "Shell"]


@dataclass
class CellRunner:
    """Per-shell state of ``%%cache``: the cache, and what ran last for ``why``."""

    shell: Shell
    cache_factory: Callable[[], Cache]
    last: str | None = None
    reasons: dict[str, list[str]] = field(default_factory=dict)
    tasks: dict[str, Task[Any]] = field(default_factory=dict)
    # Restored values whose digest drifted through pickling (see keys.scope.cell_key).
    drifted: dict[str, tuple[Any, str, str]] = field(default_factory=dict)
    auto: AutoMode | None = None  # auto mode, when on (cells run with --auto use it)
    loaded: list[str] = field(default_factory=list)  # stand-ins loaded for the next note
    deferred: Waiting = field(default_factory=Waiting)  # imports a lazy run has not made
    # the key summary of each cell's last run in this session, hit or miss: the next miss
    # is explained against what the user last saw, not against an older miss
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    imports_told: bool = False  # the status line said once that imports gain nothing
    # each cell's first code line by what it is filed under (a front end's id, in auto
    # mode), so that `why` finds a cell by the line the user sees
    labels: dict[str, str] = field(default_factory=dict)
    # what the last cell run did (its outcome, seconds, stored, always), auto mode or not:
    # an editor's state of the cell (nbcache.ui.editor)
    noted: dict[str, Any] | None = None

    @property
    def cache(self) -> Cache:
        return self.cache_factory()

    # -- the one entry point -------------------------------------------------------

    def run(self, cell: str, options: CellOptions) -> Any:
        """Restore or run ``cell``; returns its last expression's value (or NO_RESULT)."""
        __tracebackhide__ = True
        if options.auto and self.auto is not None:
            self.auto.cells.append((self.shell.cell_id, cell))
        setup, source = split_setup(self.shell.transform(cell))
        if setup:  # `%matplotlib inline` above the code: it runs every time, as in a plain run
            if reads_namespace(setup):
                self.bring_in(None)
            else:
                self._make_waiting()
            self.shell.execute(setup)  # before the key: it may set what the key reads
        decision = self.decide(source, options)
        self.last = decision.identity
        run = decision.run
        if run is None:
            if decision.warning is not None:
                warn(decision.warning, stacklevel=2)
            self._ran_uncached(decision)
            self.bring_in(None)
            started = time.perf_counter()
            result = self._uncached(source)
            self._note_seconds(decision.identity, time.perf_counter() - started)
            self._note(options, "uncached")
            self.noted = {"outcome": "uncached", "action": decision.action}  # "always": a patch
            return result
        hidden = hides_result(source)
        if decision.action == "restore" and decision.hit is not None:
            return self._restore(decision.hit, options, hidden, run)
        if decision.action == "restore-header" and decision.hit is not None:
            assert decision.recorded is not None
            return self._restore_recorded(decision.hit, decision.recorded, options, hidden, run)
        self._explain_miss(run, decision)
        if options.background:
            self.bring_in(None)
            background.start(run, self.shell, self.cache, self.tasks, self._exclude())
            return NO_RESULT
        return self._run_and_store(run, hidden)

    def _run_and_store(self, run: CellRun, hidden: bool) -> Any:
        """A miss: run the body, keep what it made, say so; returns its result."""
        __tracebackhide__ = True
        options = run.options
        made: list[Made] = []
        entries: list[CellEntry] = []
        ran: list[float] = []  # when the body ended: what follows is pickling and storing

        def compute() -> dict[str, Any]:
            __tracebackhide__ = True
            self.bring_in(run.code)
            made.append(run_recorded(self.shell, self.cache, run, self._exclude()))
            ran.append(time.perf_counter())
            entries.append(gathered(run.code, run.key, made[0]))
            return entries[0].stored()

        try:
            # Notebook functions in a restored entry read this shell's namespace, live.
            # The decision looked the key up a moment ago; under the claim it is looked
            # up again, in case another kernel stored it meanwhile.
            with restoring_into(self.shell.user_ns, self._make_waiting):
                outcome = self.cache.get_or_compute(
                    run.key.key,
                    compute,
                    lambda _: {
                        **meta_of(run, made[0], entries[0]),
                        **header_records(entries[0], made[0].effects.import_changed, run.code),
                    },
                    ask=run.ask,
                    # an entry whose files changed is replaced, or the cell would run
                    # again on every later run
                    start=Start.FORCE if options.force or run.unchanged.stale else Start.MISSED,
                )
        except RunsAlways as exc:
            # nothing stored, quietly: it runs every time, as a patch does; why says so
            self.reasons[run.identity] = [str(exc)]
            self._note_seconds(run.identity, made[0].seconds, run.key.summary)
            self._note(options, "ran", seconds=made[0].seconds, always=True)
            return made[0].result
        except NotStored as exc:
            warn(f"nbcache: {exc}", stacklevel=3)
            self._note(options, "ran", seconds=made[0].seconds)
            return made[0].result
        if outcome.hit is not None:
            return self._restore(outcome.hit, options, hidden, run)
        store_seconds = time.perf_counter() - ran[0]
        entry = entries[0]
        latest = LatestRun.of_entry(run.key, made[0].seconds, outcome.stored, entry)
        self.cache.note_latest(run.identity, latest.stored_form())
        if not options.quiet:
            names = by_interest(run.code.source, entry.vars, self.shell.user_ns)
            report = computed(names, made[0].seconds, outcome.stored, options)
            self.shell.report(
                replace(report, store_seconds=store_seconds, only_imports=self._tell_imports(run))
            )
        # the entry's key, for the record a whole-notebook run keeps of the notebook
        stored: dict[str, Any] = {"key": run.key.key} if outcome.stored else {}
        self._note(options, "ran", seconds=made[0].seconds, stored=outcome.stored, **stored)
        return made[0].result

    def decide(self, source: str, options: CellOptions) -> Decision:
        """What running ``source`` with ``options`` in this shell does now, and why."""
        identity = self._identity(source, options)
        lazy = options.auto and self.auto is not None and self.auto.lazy
        return decide(
            source,
            options,
            self.shell.user_ns,
            self.cache,
            identity=identity,
            look=Look.HEADER if lazy and not options.background else Look.FULL,
            restored=self.drifted,
            admit=self._admit(identity) if options.auto and self.auto is not None else None,
            before=self.summaries.get(identity),
            waiting=self._make_waiting,
        )

    def _admit(self, identity: str) -> Callable[[Any, int, float], bool]:
        """Auto mode's store rule, and once a cell was stored it stays stored: whether it
        restores next time must not hang on how busy the machine was when it last ran
        (a cell near the line crossed it with the load)."""
        auto = self.auto
        assert auto is not None

        def admit(entry: Any, nbytes: int, seconds: float) -> bool:
            if auto.admit(entry, nbytes, seconds):
                return True
            before = LatestRun.read(self.cache.latest(identity))  # read on a miss only
            return before is not None and bool(before.stored)

        return admit

    # -- a hit ------------------------------------------------------------------------

    def run_uncached(self, cell: str) -> Any:
        """``%%nocache``: run ``cell`` exactly as without nbcache (stand-ins loaded first)."""
        __tracebackhide__ = True
        identity = self._identity(cell, CellOptions())
        self.last = identity
        self._ran_uncached(Decision("uncached", identity, (NOCACHE,)))
        self.bring_in(None)
        return self._uncached(self.shell.transform(cell))

    def _identity(self, source: str, options: CellOptions) -> str:
        """What the cell's entries and ``why`` are filed under: its ``-n`` name, the id
        the front end gave it, or its first code line."""
        label = label_of(source)
        identity = options.name or self.shell.cell_id or f"cell: {label}"
        self.labels[identity] = label
        return identity

    def _ran_uncached(self, decision: Decision) -> None:
        """Note for ``why`` that the cell ran as without nbcache, and why."""
        self.reasons[decision.identity] = list(decision.reasons)
        self.summaries.pop(decision.identity, None)  # nothing was restored or stored

    def _uncached(self, source: str) -> Any:
        """Run ``source`` exactly as without the magic, its result shown as IPython would."""
        __tracebackhide__ = True
        result = self.shell.execute(source)
        if shows_result(result) and not hides_result(source):
            self.shell.show_result(result)
        return result

    def _restore(
        self, hit: Hit[Any], options: CellOptions, hidden: bool = False, run: CellRun | None = None
    ) -> Any:
        """Put a hit back: variables, outside state, outputs in order, the result where it
        came (unless this cell's ``;`` hides it: the key does not see a trailing ``;``)."""
        entry = CellEntry.read(hit.value)
        if entry is None:  # no cell's entry (forged, or of another shape): as a miss
            warn(
                f"nbcache: ignored the cached entry {hit.info.key[:12]}: it holds no cell's "
                "variables; the cell runs.",
                stacklevel=3,
            )
            return self._uncached(run.code.source) if run is not None else NO_RESULT
        self._explain_hit(run, hit)
        lazy = self.auto is not None and self.auto.lazy
        standing = import_stand_ins(hit.info.key, hit.info.meta) if lazy else None
        put_back(entry, self.shell.user_ns, standing)
        self.deferred.add(hit.info.meta, lazy, self.shell.display_publisher)
        if hit.source == "store":
            self.drifted.update(drifted(entry, self.shell.user_ns))
        result = result_of(entry)
        log = OutputLog(list(entry.outputs))

        def show(data: dict[str, Any], meta: dict[str, Any]) -> None:
            if not hidden:
                self.shell.show_result(result, (data, meta))

        log.replay(self.shell.publish, self.shell.page, show)
        if not hidden and shows_result(result) and not any(e[0] == "result" for e in log.events):
            self.shell.show_result(result)  # its miss hid it with a ``;`` this cell lacks
        if not options.quiet:
            self.shell.report(self._shown(restored(hit, entry.vars), run))
        self._note(options, "restored", seconds=hit.info.compute_seconds, hit=hit)
        if options.background:
            # A background cell that restored is a task that is already done, so that
            # `%nbcache wait NAME` and `%nbcache tasks` after it work as after a miss.
            done: Task[None] = Task(options.name or "cell")
            done.run(lambda: None)
            self.tasks[options.name or done.name] = done
        return result

    def _restore_recorded(
        self, hit: Hit[Any], record: HeaderRecord, options: CellOptions, hidden: bool, run: CellRun
    ) -> Any:
        """A hit put back from its signed header alone: stand-ins for its values (loaded
        when a cell that runs needs them), its output replayed, nothing unpickled."""
        self._explain_hit(run, hit)
        if self.cache.store is not None:
            self.cache.store.hold(hit.info.key)  # its stand-ins may load from it later
        result = stand_ins(hit.info.key, record, self.shell.user_ns)
        self.deferred.add(hit.info.meta, True, self.shell.display_publisher)
        log = OutputLog([tuple(event) for event in record.outputs])

        def show(data: dict[str, Any], meta: dict[str, Any]) -> None:
            if not hidden:
                self.shell.show_result(result if result is not None else UNSTORED, (data, meta))

        log.replay(self.shell.publish, self.shell.page, show)
        if not options.quiet:
            self.shell.report(self._shown(restored(hit, record.vars), run))
        self._note(options, "restored", seconds=hit.info.compute_seconds, hit=hit)
        return result if result is not None else NO_RESULT

    def bring_in(self, code: CellCode | None) -> None:
        """Before a body runs: the waiting imports (unless it reaches no library), then the
        stand-ins of values it can reach (``code`` None: all)."""
        namespace = self.shell.user_ns
        waits = bool(self.deferred.modules) and not reaches_libraries(code, namespace)
        if not waits:
            self._make_waiting()  # no value: not listed
        if pending(namespace):
            self.loaded.extend(swap_in(needed(code, namespace), namespace, self._entry_of))
        if waits and reaches_libraries(code, namespace):  # loaded: a list of numpy floats
            self._make_waiting()

    def _make_waiting(self) -> None:
        self.deferred.make(self.shell.user_ns, self.shell.display_publisher)

    def _entry_of(self, key: str) -> CellEntry | None:
        """The values of the entry ``key`` (a stand-in's), or None and a warning."""
        with restoring_into(self.shell.user_ns, self._make_waiting):  # see decide()
            hit = self.cache.lookup(key, Ask(name=VALUE_NAME))
        entry = CellEntry.read(hit.value) if hit is not None else None
        if entry is None:
            warn(
                f"nbcache: the stored values of an earlier cell (entry {key[:12]}) are "
                "gone from the store since it was restored; run the notebook again.",
                stacklevel=5,
            )
        return entry

    def _note_seconds(
        self, identity: str, seconds: float, summary: dict[str, Any] | None = None
    ) -> None:
        """In auto mode, how long a cell that runs uncached or always runs took, for a
        plan's estimate; the key summary ``why`` compares with is ``summary`` (the cell's
        key, when it has one), else stays the last keyed run's."""
        if self.auto is None:
            return
        if summary is None:
            before = LatestRun.read(self.cache.latest(identity))
            summary = before.summary if before is not None else {}
        self.cache.note_latest(identity, LatestRun(summary, seconds).stored_form())

    def _note(
        self, options: CellOptions, outcome: str, *, hit: Hit[Any] | None = None, **more: Any
    ) -> None:
        """What a cell did while auto mode is on (a ``%%cache`` cell of the notebook too),
        for ``nbcache run``'s summary."""
        self.noted = {"outcome": outcome, **more}
        if self.auto is None:
            return
        loaded, self.loaded = self.loaded, []
        record = {"cell_id": self.shell.cell_id, "outcome": outcome, "loaded": loaded, **more}
        # why's words, so the executed notebook and `nbcache run -v` say them per cell
        record["why"] = self.reasons.get(self.last, []) if self.last else []
        if hit is not None:
            record["load_seconds"] = hit.load_seconds
            record["key"] = hit.info.key
        self.auto.note(record)

    # -- a miss -----------------------------------------------------------------------

    def _explain_miss(self, run: CellRun, decision: Decision) -> None:
        self._explain(run, list(decision.reasons))

    def _explain_hit(self, run: CellRun | None, hit: Hit[Any]) -> None:
        """Note for ``why`` that the cell's last run restored, and from what."""
        if run is not None:
            self._explain(run, [restored_reason(hit.info.created, hit.info.compute_seconds)])

    def _explain(self, run: CellRun, reasons: list[str]) -> None:
        """Note ``reasons`` for ``why`` (with the advice on an imports-only cell), and the
        key summary the cell's next miss is explained against."""
        if _advise_imports(run):
            reasons.append(IMPORTS_ONLY)
        self.reasons[run.identity] = reasons
        self.summaries[run.identity] = run.key.summary

    def _shown(self, report: CellReport, run: CellRun | None) -> CellReport:
        """A restore's report as the status line shows it: names in the order the user
        cares about (see nbcache.run.naming), imports that gain nothing said once."""
        if run is None:
            return report
        names = tuple(by_interest(run.code.source, report.names, self.shell.user_ns))
        return replace(report, names=names, only_imports=self._tell_imports(run))

    def _tell_imports(self, run: CellRun | None) -> bool:
        """Whether this status line says that caching imports gains nothing: the first
        imports-only cell of the session says it, the others stay short."""
        if run is None or self.imports_told or not only_imports(run.code.source):
            return False
        self.imports_told = True
        return True

    def _exclude(self) -> list[str]:
        return [self.cache.store.location] if self.cache.store is not None else []

    def wait(self, name: str | None = None) -> list[Task[Any]]:
        """Block until the named background task (default: all of them) ends."""
        chosen = [t for i, t in self.tasks.items() if name in (None, i, t.name)]
        for task in chosen:
            while not task.settled.wait(0.2):  # short waits keep Ctrl-C working
                pass
        return chosen

    def plan(
        self,
        cells: list[tuple[str | None, str]] | None = None,
        initial: Mapping[str, Any] | None = None,
        numbers: list[int] | None = None,
    ) -> list[PlanRow]:
        """What running ``cells`` (default: those auto mode ran so far) in a fresh kernel
        whose namespace starts as ``initial`` would do with each, without running any."""
        chosen = cells if cells is not None else list(self.auto.cells if self.auto else [])
        return plan(chosen, self.cache, self.shell.transform, initial, numbers)

    # -- %nbcache why -----------------------------------------------------------------

    def why(self, name: str | None = None) -> list[str]:
        """Why the named cell (default: the one run last) restored, ran or ran uncached
        the last time it ran: a ``-n`` name, or a cell's first code line."""
        target = name or self.last
        if target is None:
            return ["no cached cell has run yet in this session"]
        found = [
            reasons
            for identity, reasons in self.reasons.items()
            if target in (identity, self.labels.get(identity)) or identity == f"cell: {target}"
        ]
        if found:
            return found[-1]
        known = self.cache.latest(target) is not None or any(
            target in (record.label, record.first_line) for record in self.cache.ledger.records()
        )
        return [unknown_name(target, stored=known)]


def _advise_imports(run: CellRun) -> bool:
    """Whether ``why`` advises leaving this imports-only cell uncached: not in auto mode,
    whose later keys and plans stand on what such a cell bound being stored."""
    return not run.options.auto and only_imports(run.code.source)
