"""``%%cache`` without IPython: look a cell up, or run it and keep what it made.

A hit puts the stored variables back, replays the cell's output and returns
its result; a miss runs the body (live output still shows), then stores the
variables it bound or mutated, its output and its result.  Every fault turns
into one warning: the cell itself always runs or restores.
"""

from __future__ import annotations

import importlib
import io
import linecache
import re
import sys
import time
import types
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..cache.core import Ask, Cache, Hit
from ..entry.format import EntryInfo
from ..entry.pickling import _probe
from ..errors import CacheError, KeyPicklingError, ValuePicklingError, warn
from ..keys.calls import explain
from ..keys.hashing import describe, digest
from ..keys.scope import (
    CellCode,
    CellKey,
    analyze,
    cell_key,
    changed_names,
    is_shell_name,
    namespace_snapshot,
)
from ..tasks.executors import check_executor, configured_executor, get_executor
from ..tasks.task import Task, TaskCancelled, current_task, follow_tqdm
from . import routing as background
from .effects import Effects, seeds_first
from .effects import apply as apply_effects
from .files import FileReads
from .output import NO_RESULT, OutputLog, from_user_code
from .report import Card, CellReport

__all__ = ["CellCache", "CellOptions", "Shell"]


class Shell(Protocol):
    """What running a cell needs from the interactive shell (see nbcache.ui.ipython)."""

    cell_id: str | None

    @property
    def user_ns(self) -> dict[str, Any]: ...

    @property
    def display_publisher(self) -> Any: ...

    def transform(self, cell: str) -> str: ...

    def execute(self, source: str, namespace: dict[str, Any] | None = None) -> Any: ...

    def report(self, report: CellReport) -> None:
        """Say what a cell run did (a status line, in IPython)."""

    def card(self, task: Task[Any]) -> Card:
        """Show a card that follows ``task`` from now on, and return it."""
        ...

    def flush_figures(self) -> None: ...

    def paging(self, add: Callable[[Any, int], None]) -> AbstractContextManager[None]:
        """Within the block, hand what goes to the pager (``%prun``, ``?``) to ``add`` too."""
        ...

    def page(self, data: Any, start: int) -> None:
        """Send ``data`` to the pager again (a hit of a cell that paged)."""

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None: ...


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


_VALUE_NAME = "the cell's variables"
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|CREDENTIAL|(^|_)KEY$", re.IGNORECASE)


class _Unchanged:
    """Validates an entry by what it was computed from outside its key: the files it read
    and the outside state it depended on; keeps what changed, for why."""

    def __init__(self) -> None:
        self.stale: list[str] = []

    def __call__(self, info: EntryInfo) -> bool:
        files = FileReads(dict(info.meta.get("files", {})), dict(info.meta.get("paths", {})))
        self.stale = files.changed()
        outside = info.meta.get("outside")
        if isinstance(outside, dict) and outside:
            self.stale += Effects.now().differs(outside)
        return not self.stale


@dataclass
class _Made:
    """What one run of a cell body made, before it is stored."""

    namespace: dict[str, Any]
    before: dict[str, int]
    log: OutputLog
    result: Any
    seconds: float
    files: FileReads
    effects: Effects  # the outside state when the body started
    changes: dict[str, Any]  # what of it the body changed


@dataclass(frozen=True)
class _ModuleRef:
    """A module bound by the cell (``import numpy as np``), stored by name."""

    name: str


@dataclass
class CellCache:
    """Per-shell state of ``%%cache``: the cache, and what ran last for ``why``."""

    shell: Shell
    cache_factory: Callable[[], Cache]
    last: str | None = None
    reasons: dict[str, list[str]] = field(default_factory=dict)
    tasks: dict[str, Task[Any]] = field(default_factory=dict)

    @property
    def cache(self) -> Cache:
        return self.cache_factory()

    # -- the one entry point -------------------------------------------------------

    def run(self, cell: str, options: CellOptions) -> Any:
        """Restore or run ``cell``; returns its last expression's value (or NO_RESULT)."""
        __tracebackhide__ = True
        source = self.shell.transform(cell)
        prepared = self._prepare(source, options)
        if prepared is None:
            return self.shell.execute(source)  # uncached, exactly as without the magic
        code, ck, identity = prepared
        files = _Unchanged()
        ask = Ask(
            persist=options.store,
            max_age=options.max_age,
            name=_VALUE_NAME,
            validate=files,
            fresh=_intact,
            unpicklable=_unpicklable_message,
        )
        if options.background:
            hit = None if options.force else self.cache.lookup(ck.key, ask=ask)
            if hit is not None:
                return self._restore(hit, options)
            self._explain_miss(identity, ck, files.stale, options)
            return self._start_background(code, ck, identity, options, ask)
        made: list[_Made] = []

        def compute() -> dict[str, Any]:
            __tracebackhide__ = True
            self._explain_miss(identity, ck, files.stale, options)
            made.append(self._run_body(code, FileReads.of(options.watch)))
            return _kept(code, ck, made[0])

        try:
            outcome = self.cache.get_or_compute(
                ck.key,
                compute,
                lambda entry: _meta(code, ck, identity, options, made[0], entry),
                force=options.force,
                ask=ask,
            )
        except NotKept as exc:
            warn(f"nbcache: {exc}", stacklevel=3)
            return made[0].result
        if outcome.hit is not None:
            return self._restore(outcome.hit, options)
        self.cache.note_latest(identity, {**ck.summary, "seconds": made[0].seconds})
        if not options.quiet:
            names = list(outcome.value["vars"])
            self.shell.report(_computed(names, made[0].seconds, outcome.stored, options))
        return made[0].result

    def _prepare(self, source: str, options: CellOptions) -> tuple[CellCode, CellKey, str] | None:
        """The cell's code, key and name; None when it must run uncached (a syntax error,
        which Python then reports, or an input that cannot be hashed, with a warning)."""
        try:
            code = analyze(source)
        except SyntaxError:
            return None
        except Exception as exc:  # noqa: BLE001 - a cell we cannot read runs as Python runs it
            warn(f"nbcache: cannot read this cell ({_failure(exc)}); it runs uncached.", 3)
            return None
        if code.uses_shell:
            return None  # line magics and shell escapes act outside the namespace: run it
        identity = options.name or self.shell.cell_id or f"cell: {code.first_line}"
        self.last = identity
        try:
            ck = cell_key(code, self.shell.user_ns, ignore=options.ignore, identity=identity)
        except KeyPicklingError as exc:
            warn(f"nbcache: {exc}", stacklevel=3)
            return None
        except Exception as exc:  # noqa: BLE001 - a key that cannot be built: run uncached
            warn(f"nbcache: cannot build this cell's key ({_failure(exc)}); it runs uncached.", 3)
            return None
        return code, ck, identity

    # -- a hit ------------------------------------------------------------------------

    def _restore(self, hit: Hit[Any], options: CellOptions) -> Any:
        entry = hit.value
        namespace = self.shell.user_ns
        for name, value in entry["vars"].items():
            namespace[name] = _bring_back(value)
        for name in entry["deleted"]:
            namespace.pop(name, None)
        apply_effects(entry.get("effects", {}))
        OutputLog(list(entry["outputs"])).replay(self.shell.publish, self.shell.page)
        if not options.quiet:
            self.shell.report(_restored(hit, entry))
        if options.background:
            # A background cell that restored is a task that is already done, so that
            # `%nbcache wait NAME` and `%nbcache tasks` after it work as after a miss.
            done: Task[None] = Task(options.name or str(entry.get("label", "cell")))
            done.run(lambda: None)
            self.tasks[options.name or done.name] = done
        return entry["result"]

    # -- a miss -----------------------------------------------------------------------

    def _explain_miss(
        self, identity: str, ck: CellKey, stale: list[str], options: CellOptions
    ) -> None:
        if options.force:
            self.reasons[identity] = ["the cell was run with -f/--force"]
        elif stale:
            self.reasons[identity] = list(stale)
        else:
            self.reasons[identity] = explain(self.cache.latest(identity), ck.summary)

    def _run_body(self, code: CellCode, watch: FileReads) -> _Made:
        """Run the body in the user namespace, recording its output and the files it read."""
        __tracebackhide__ = True
        namespace = self.shell.user_ns
        before = namespace_snapshot(namespace)
        log = OutputLog()
        outside = Effects.now()
        start = time.perf_counter()
        with (
            log.recording(self.shell.display_publisher),
            self.shell.paging(lambda data, start: log.add("page", data, start)),
            FileReads.recording(self._exclude()) as read,
        ):
            result = self.shell.execute(code.source)
            self.shell.flush_figures()
        seconds = time.perf_counter() - start
        files = FileReads.of(read).merged(watch)
        changes = outside.changes(Effects.now())
        return _Made(namespace, before, log, result, seconds, files, outside, changes)

    def _exclude(self) -> list[str]:
        return [self.cache.store.location] if self.cache.store is not None else []

    # -- a background miss --------------------------------------------------------------

    def _start_background(
        self, code: CellCode, ck: CellKey, identity: str, options: CellOptions, ask: Ask
    ) -> Any:
        """Run the body in the background, in a copy of the namespace; return at once.

        On a thread, the body runs there; on another executor (a process pool, a
        dask cluster) a thread waits for it while the inputs are pickled over and
        the bound variables come back. When it ends, the variables it made join the
        notebook's namespace and the entry is stored, before anyone waiting on the
        task wakes up; a cancelled task's variables are dropped.

        Raises:
            ExecutorError: the executor cannot run work (dask not installed or not
                configured), before anything starts.
        """
        chosen = options.executor or configured_executor()
        check_executor(chosen)
        here = chosen == "thread" or isinstance(chosen, ThreadPoolExecutor)
        task: Task[None] = Task(options.name or code.first_line)
        task.expected = (self.cache.latest(identity) or {}).get("seconds")  # for an ETA
        card = self.shell.card(task)
        self.tasks[identity] = task
        background.install(self.shell.display_publisher)
        namespace = dict(self.shell.user_ns)
        watch = FileReads.of(options.watch)

        def body() -> None:
            log = OutputLog()
            made: list[_Made] = []

            def sink(kind: str, *payload: Any) -> None:
                log.add(kind, *payload)
                card.output(kind, *payload)

            def compute() -> dict[str, Any]:
                before = namespace_snapshot(namespace)
                outside = Effects.now()
                start = time.perf_counter()
                with background.routed(sink), FileReads.recording(self._exclude()) as read:
                    if here:
                        result = self.shell.execute(code.source, namespace)
                    else:
                        result = _elsewhere(task, code, namespace, sink, get_executor(chosen))
                if task.cancel_requested:
                    raise TaskCancelled(f"task {task.name!r} was cancelled")  # nothing is kept
                seconds = time.perf_counter() - start
                files = FileReads.of(read).merged(watch)
                changes = outside.changes(Effects.now()) if here else {}
                made.append(_Made(namespace, before, log, result, seconds, files, outside, changes))
                return _kept(code, ck, made[0])

            # The key missed a moment ago; if another kernel holds its lease, its entry is
            # waited for and restored here instead of computing the cell twice.
            try:
                outcome = self.cache.get_or_compute(
                    ck.key,
                    compute,
                    lambda entry: _meta(code, ck, identity, options, made[0], entry),
                    force=options.force,
                    looked=True,
                    ask=ask,
                )
            except NotKept as exc:  # the values the body made still reach the notebook
                card.output("stderr", f"nbcache: {exc}\n")
                bound, deleted = changed_names(made[0].before, namespace, code.binds)
                self.shell.user_ns.update({name: namespace[name] for name in bound})
                for name in deleted:
                    self.shell.user_ns.pop(name, None)
                return
            if task.cancel_requested:
                raise TaskCancelled(f"task {task.name!r} was cancelled")  # nothing is merged
            entry = outcome.value
            if outcome.hit is None:
                self.cache.note_latest(identity, {**ck.summary, "seconds": made[0].seconds})
                values = {name: namespace[name] for name in entry["vars"]}
                seconds = made[0].seconds
                card.finished(_computed(list(values), seconds, outcome.stored, options))
            else:
                for kind, *payload in entry["outputs"]:
                    card.output(kind, *payload)
                apply_effects(entry.get("effects", {}))
                values = {name: _bring_back(value) for name, value in entry["vars"].items()}
                card.finished(_restored(outcome.hit, entry))
            self.shell.user_ns.update(values)
            for name in entry["deleted"]:
                self.shell.user_ns.pop(name, None)

        runner = chosen if isinstance(chosen, ThreadPoolExecutor) else get_executor("thread")
        task.submit_to(runner, body)
        return NO_RESULT

    def wait(self, name: str | None = None) -> list[Task[Any]]:
        """Block until the named background task (default: all of them) ends."""
        chosen = [t for i, t in self.tasks.items() if name in (None, i, t.name)]
        for task in chosen:
            while not task.settled.wait(0.2):  # short waits keep Ctrl-C working
                pass
        return chosen

    # -- %nbcache why -----------------------------------------------------------------

    def why(self, name: str | None = None) -> list[str]:
        """Why the named cell (default: the one run last) missed the last time it ran."""
        target = name or self.last
        if target is None:
            return ["no cached cell has run yet in this session"]
        for identity, reasons in self.reasons.items():
            if identity == target or identity == f"cell: {target}":
                return reasons
        return [f"`{target}` has not missed in this session"]


# -- a background cell elsewhere: another process, a dask cluster ------------------------


def _elsewhere(
    task: Task[Any], code: CellCode, namespace: dict[str, Any], sink: Any, executor: Executor
) -> Any:
    """Run the body on ``executor``: inputs pickled there, bound variables brought back.

    Cancelling stops it: a loky pool by stopping its workers, dask at the body's
    next progress step, any other executor if the body has not started yet (else
    it runs to its end); its variables are dropped either way.
    """
    from ..tasks.dask import DaskExecutor, modules_imported_by

    filename = _remember_source(code.source)
    binds = sorted(code.binds)
    remote: Future[Any]
    if isinstance(executor, DaskExecutor):
        inputs = {n: namespace[n] for n in code.reads if n in namespace}
        remote = executor.start(
            run_in_worker,
            (code.source, inputs, binds, filename),
            name=task.name,
            modules=modules_imported_by(code.source),
            on_progress=task.record,
        )
    else:
        inputs = {n: _storable(namespace[n]) for n in code.reads if n in namespace}
        remote = executor.submit(run_in_worker, code.source, inputs, binds, filename)
    made = _wait(task, executor, remote, filename)
    for kind in ("stdout", "stderr"):
        if made[kind]:
            sink(kind, made[kind])
    for name, why in made["stayed"].items():
        sink("stderr", f"nbcache: `{name}` stayed on the worker: it cannot be pickled ({why})\n")
    for name, value in made["vars"].items():
        namespace[name] = _bring_back(value)
    return made["result"]


def _wait(task: Task[Any], executor: Executor, remote: Future[Any], filename: str) -> Any:
    """``remote``'s result; stops it once the task is cancelled (then raises TaskCancelled)."""
    __tracebackhide__ = True
    stopping = False
    while True:
        try:
            return remote.result(timeout=0.2)  # short waits notice a cancel soon
        except FutureTimeout:
            if task.cancel_requested and not stopping:
                stopping = True
                if _stop(executor, remote):
                    raise TaskCancelled(f"task {task.name!r} was cancelled") from None
        except CancelledError:
            raise TaskCancelled(f"task {task.name!r} was cancelled") from None
        except BaseException as exc:  # noqa: BLE001 - the body's own, from its first line on
            # Re-raising the exception being handled keeps its own cause and context.
            raise exc.with_traceback(from_user_code(exc.__traceback__, filename))  # noqa: B904


def _stop(executor: Executor, remote: Future[Any]) -> bool:
    """Ask ``executor`` to stop ``remote``; True if nothing of it runs any more."""
    from ..tasks.dask import DaskExecutor

    if isinstance(executor, DaskExecutor):
        executor.stop(remote)  # ``remote`` ends once the worker lets go
        return False
    if remote.cancel():
        return True
    if type(executor).__module__.startswith("joblib.externals.loky"):
        executor.shutdown(wait=False, kill_workers=True)  # type: ignore[call-arg]
        return True
    return False  # it cannot be stopped: wait for its end, then drop its variables


def _remember_source(source: str) -> str:
    """A file name for the body, with its lines in linecache, so tracebacks show them."""
    filename = f"<background cell {uuid.uuid4().hex[:8]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return filename


def run_in_worker(
    source: str, inputs: dict[str, Any], binds: list[str], filename: str = "<background cell>"
) -> dict[str, Any]:
    """The body of a background cell, as a worker process runs it.

    What the body prints is captured for this thread only (a dask worker runs
    other tasks meanwhile); its progress steps report to the task running it.
    """
    import ast

    namespace: dict[str, Any] = {"__name__": "__main__"}
    namespace.update({name: _bring_back(value) for name, value in inputs.items()})
    before = {name: id(value) for name, value in namespace.items()}
    if current_task() is not None and "tqdm" in source:
        follow_tqdm(load=True)  # a fresh worker has not imported tqdm yet
    tree = ast.parse(source)
    last = None
    final = tree.body[-1] if tree.body else None
    if isinstance(final, ast.Expr):
        tree.body.pop()
        last = ast.Expression(final.value)
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    background.install()
    with background.routed(lambda kind, *payload: out[kind].append(payload[0])):
        exec(compile(tree, filename, "exec"), namespace)
        result = NO_RESULT if last is None else eval(compile(last, filename, "eval"), namespace)
    names = {n for n in binds if n in namespace}
    names |= {n for n, v in namespace.items() if n != "__builtins__" and before.get(n) != id(v)}
    made = {n: _storable(namespace[n]) for n in sorted(names) if not _closed_file(namespace[n])}
    stay = {}
    if _probe(made) is not None:  # only what can be pickled can come back
        stay = {n: f"{describe(v)['type']}: {e}" for n, v in made.items() if (e := _probe(v))}
    return {
        "vars": {n: v for n, v in made.items() if n not in stay},
        "stayed": stay,
        "stdout": "".join(out["stdout"]),
        "stderr": "".join(out["stderr"]),
        "result": None if result is NO_RESULT else result,
    }


# -- helpers -------------------------------------------------------------------------


def _closed_file(value: Any) -> bool:
    """``with open(...) as f`` leaves ``f`` bound to a closed file: nothing to restore."""
    return isinstance(value, io.IOBase) and value.closed


def _storable(value: Any) -> Any:
    return _ModuleRef(value.__name__) if isinstance(value, types.ModuleType) else value


def _bring_back(value: Any) -> Any:
    return importlib.import_module(value.name) if isinstance(value, _ModuleRef) else value


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


def _sharing(namespace: Mapping[str, Any], names: list[str]) -> list[str]:
    """Arrays elsewhere in the namespace that share memory with the arrays the cell bound
    or changed: a write through a view (``sub[0] = 99``) changes its base, and the other
    way round, so both are kept."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return []
    touched = [namespace[n] for n in names if isinstance(namespace[n], numpy.ndarray)]
    if not touched:
        return []
    return [
        name
        for name, value in namespace.items()
        if name not in names
        and isinstance(value, numpy.ndarray)
        and not is_shell_name(name)
        and any(numpy.may_share_memory(value, other) for other in touched)
    ]


def _digests(namespace: Mapping[str, Any], names: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = digest(namespace[name], name=name)
        except KeyPicklingError:
            out[name] = None
    return out


def _intact(entry: Mapping[str, Any]) -> bool:
    """Whether live values kept in memory still hash as they did when stored."""
    for name, expected in entry.get("digests", {}).items():
        if expected is None:
            continue
        try:
            if digest(_bring_back(entry["vars"][name]), name=name) != expected:
                return False
        except KeyPicklingError:
            return False
    return True


def _unpicklable_message(entry: Mapping[str, Any], exc: ValuePicklingError) -> str:
    bad = [name for name, value in entry["vars"].items() if _probe(value) is not None]
    what = ", ".join(f"`{n}` ({describe(entry['vars'][n])['type']})" for n in bad) or "its output"
    reason = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    fix = f" `del {', '.join(bad)}` at the end of the cell to store the rest." if bad else ""
    return (
        f"nbcache: this cell's {what} cannot be pickled{reason}, so its result is kept in "
        f"memory only and the cell runs again after a restart.{fix}"
    )


class NotKept(CacheError):
    """The body ran, but what it made could not be gathered: nothing is stored."""


def _kept(code: CellCode, ck: CellKey, made: _Made) -> dict[str, Any]:
    """:func:`_entry`, with any failure of ours turned into :class:`NotKept`."""
    secret = [k for k in made.changes.get("os.environ", {}) if _SECRET_NAME.search(k)]
    if secret:
        raise NotKept(
            f"the cell sets the environment variable {secret[0]}, which looks like a secret; "
            "secrets are never written to the store, so the cell runs again next time."
        )
    try:
        return _entry(code, ck, made)
    except Exception as exc:
        raise NotKept(
            f"the cell ran, but its variables could not be gathered for storing "
            f"({_failure(exc)}); nothing is stored and it runs again next time."
        ) from exc


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _entry(code: CellCode, ck: CellKey, made: _Made) -> dict[str, Any]:
    """What is stored of a cell run: the variables it bound or mutated, the names it
    deleted, its outputs in order and its result."""
    namespace = made.namespace
    bound, deleted = changed_names(made.before, namespace, code.binds)
    mutated = _mutated(ck, namespace, bound)
    mutated += _sharing(namespace, [*bound, *mutated])
    names = sorted(n for n in {*bound, *mutated} if not _closed_file(namespace[n]))
    return {
        "vars": {name: _storable(namespace[name]) for name in names},
        "deleted": deleted,
        "outputs": made.log.events,
        "result": made.result,
        "digests": _digests(namespace, names),
        "effects": made.changes,
    }


def _meta(
    code: CellCode,
    ck: CellKey,
    identity: str,
    options: CellOptions,
    made: _Made,
    entry: Mapping[str, Any],
) -> dict[str, Any]:
    """The signed metadata of a cell's entry: for listings, ``why`` and its file checks."""
    return {
        "label": options.name or code.first_line,
        "identity": identity,
        "summary": ck.summary,
        "files": made.files.states,
        "paths": made.files.paths,
        "vars": list(entry["vars"]),
        "compute_seconds": made.seconds,
        "pinned": options.pin,
        "kind": "cell",
        "first_line": code.first_line,
        "outside": made.effects.inputs(
            made.changes, seeded=seeds_first(code.source), drew=_drew(made.log)
        ),
    }


def _drew(log: OutputLog) -> bool:
    """Whether the cell showed a picture (so matplotlib's settings shaped it)."""
    return any(
        event[0] == "display" and any(str(kind).startswith("image/") for kind in event[1])
        for event in log.events
    )


def _restored(hit: Hit[Any], entry: Mapping[str, Any]) -> CellReport:
    return CellReport(
        "restored",
        tuple(entry["vars"]),
        hit.load_seconds,
        hit.size,
        hit.source,
        hit.info.compute_seconds,
        hit.info.created,
    )


def _computed(names: list[str], seconds: float, size: int, options: CellOptions) -> CellReport:
    where: Literal["store", "memory", "no-store"] = "store" if size else "memory"
    return CellReport(
        "computed", tuple(names), seconds, size, where if options.store else "no-store"
    )
