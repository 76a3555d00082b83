"""Background cells: the body runs on a thread, a process pool or dask while the cell
returns at once; its variables join the notebook when it ends.

Wherever it runs, its progress loop checkpoints it (see :mod:`nbcache.run.checkpoint`):
on a thread here, on a process pool or dask in the worker, which writes to the
kernel's store. A run that resumed says so on its card.
"""

from __future__ import annotations

import time
import types
from collections.abc import Iterable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from ..cache.core import Cache, Hit, Start
from ..entry.pickling import dump_parts, load_parts, probe, restoring_into
from ..keys.classes import describe
from ..keys.scope import changed_names, namespace_snapshot
from ..tasks.executors import (
    Placement,
    check_executor,
    configured_executor,
    get_executor,
    placement,
    runs_here,
)
from ..tasks.task import Task, TaskCancelled, current_task, follow_tqdm
from . import routing
from .body import remember, run_source
from .cellrun import (
    CellRun,
    Made,
    NotStored,
    bring_back,
    closed_file,
    computed,
    gathered,
    meta_of,
    put_back,
    restored,
    storable,
)
from .checkpoint import (
    Checkpointer,
    CheckpointError,
    Remote,
    checkpointing,
    remote_checkpoints,
    worker_cache,
)
from .effects import Effects
from .effects import ran as effects_ran
from .files import FileReads
from .naming import by_interest
from .output import NO_RESULT, OutputLog, from_user_code
from .records import CellEntry, LatestRun
from .report import Card, CellReport, Resume
from .shell import Shell

__all__ = ["WorkerReply", "run_in_worker", "start"]


@dataclass(frozen=True)
class WorkerReply:
    """What a body run on another process or a dask worker sends back to the kernel."""

    vars: dict[str, Any]  # what it bound or changed, as it pickles (modules by name)
    stayed: dict[str, str]  # names that cannot be pickled, and why: they stay there
    stdout: str
    stderr: str
    result: Any  # its last expression's value; None when it had none
    resumed: Resume | None  # where it picked up an interrupted run


def start(
    run: CellRun, shell: Shell, cache: Cache, tasks: dict[str, Task[Any]], exclude: list[str]
) -> Task[None]:
    """Run the body in the background, in a copy of the namespace; return its task at once.

    On a thread, the body runs there; on another executor (a process pool, a
    dask cluster) a thread waits for it while the inputs are pickled over and
    the bound variables come back. When it ends, the variables it made join the
    notebook's namespace and the entry is stored, before anyone waiting on the
    task wakes up; a cancelled task's variables are dropped.

    Raises:
        ExecutorError: the executor cannot run work (dask not installed or not
            configured), before anything starts.
    """
    chosen = run.options.executor or configured_executor()
    check_executor(chosen)
    task: Task[None] = Task(run.options.name or run.code.first_line)
    latest = LatestRun.read(cache.latest(run.identity))
    task.expected = latest.seconds if latest is not None else None  # for an ETA
    cell = _Background(run, shell, cache, task, shell.card(task), chosen, exclude)
    tasks[run.identity] = task
    routing.install(shell.display_publisher)
    task.submit_to(get_executor(chosen if cell.here else "thread"), cell.body)
    return task


class _Background:
    """One background cell from its start to its variables joining the notebook."""

    def __init__(
        self,
        run: CellRun,
        shell: Shell,
        cache: Cache,
        task: Task[None],
        card: Card,
        chosen: Any,
        exclude: list[str],
    ) -> None:
        self.run, self.shell, self.cache, self.task, self.card = run, shell, cache, task, card
        self.chosen = chosen
        self.here = runs_here(chosen)  # else it runs elsewhere and a thread waits for it
        self.exclude = exclude
        self.namespace = dict(shell.user_ns)
        self.watch = FileReads.of(run.options.watch)
        self.number = shell.cell_number()  # read now: once it runs, the prompt counts on
        self.log = OutputLog()
        self.made: Made | None = None
        self.entry: CellEntry | None = None
        self.resumed: list[Resume] = []  # where this run picked up an unfinished one

    def sink(self, kind: str, *payload: Any) -> None:
        self.log.add(kind, *payload)
        self.card.output(kind, *payload)

    def told(self, report: CellReport) -> None:
        if report.resumed is not None:
            self.resumed.append(report.resumed)
            self.task.mark_resumed(report.resumed.text)  # the card shows it while it runs

    def body(self) -> None:
        """What the task runs: compute (or restore) the cell, then merge what it made."""
        run = self.run
        # The key missed a moment ago; if another kernel holds its lease, its entry is
        # waited for and restored here instead of computing the cell twice.
        try:
            with restoring_into(self.shell.user_ns):  # a thread starts without its context
                outcome = self.cache.get_or_compute(
                    run.key.key,
                    self.compute,
                    lambda _: meta_of(run, self._made(), self._entry()),
                    ask=run.ask,
                    start=Start.FORCE if run.options.force else Start.MISSED,
                )
        except NotStored as exc:  # the values the body made still reach the notebook
            self.card.output("stderr", f"nbcache: {exc}\n")
            bound, deleted = changed_names(self._made().before, self.namespace, run.code.binds)
            self._merge(bound, deleted)
            return
        if self.task.cancel_requested:
            raise TaskCancelled(f"task {self.task.name!r} was cancelled")  # nothing is merged
        if outcome.hit is None:
            self._computed(outcome.stored)
        else:
            self._restored(outcome.hit, outcome.value)

    def compute(self) -> dict[str, Any]:
        run, namespace = self.run, self.namespace
        before = namespace_snapshot(namespace)
        outside = Effects.now()
        start = time.perf_counter()
        earlier = 0.0  # what interrupted runs did, when this one resumed
        with routing.routed(self.sink), FileReads.recording(self.exclude) as read:
            if self.here:
                with checkpointing(
                    self.cache,
                    run,
                    namespace,
                    before,
                    self.log,
                    outside,
                    show=self.card.output,
                    report=self.told,
                ) as checkpoints:
                    result = self.shell.execute(run.code.source, namespace, self.number)
                checkpoints.finished()  # its entry replaces its checkpoint
                earlier = checkpoints.earlier_seconds
            else:
                where = placement(self.chosen)
                remote = remote_checkpoints(self.cache, run)
                result, resume = _elsewhere(self.task, run, remote, namespace, self.sink, where)
                if resume is not None:
                    self.told(CellReport("resumed", (), 0.0, resumed=resume))
                    earlier = resume.seconds_before
        if self.task.cancel_requested:
            raise TaskCancelled(f"task {self.task.name!r} was cancelled")  # nothing is kept
        seconds = time.perf_counter() - start + earlier
        files = FileReads.of(read).merged(self.watch)
        changes = outside.changes(Effects.now()) if self.here else {}
        effects_ran(changes)
        self.made = Made(namespace, before, self.log, result, seconds, files, outside, changes)
        self.entry = gathered(run.code, run.key, self.made)
        return self.entry.stored()

    def _made(self) -> Made:
        assert self.made is not None  # set by compute, before anything reads it
        return self.made

    def _entry(self) -> CellEntry:
        assert self.entry is not None
        return self.entry

    def _merge(self, bound: Iterable[str], deleted: Iterable[str]) -> None:
        """The names the body bound join the notebook; those it deleted leave it."""
        self.shell.user_ns.update({name: self.namespace[name] for name in bound})
        for name in deleted:
            self.shell.user_ns.pop(name, None)

    def _computed(self, stored: int) -> None:
        run, made, entry = self.run, self._made(), self._entry()
        self.cache.note_latest(run.identity, LatestRun(run.key.summary, made.seconds).stored_form())
        self._merge(entry.vars, entry.deleted)
        names = by_interest(run.code.source, entry.vars, self.shell.user_ns)  # as a status line
        report = computed(names, made.seconds, stored, run.options)
        self.card.finished(replace(report, resumed=self.resumed[-1] if self.resumed else None))

    def _restored(self, hit: Hit[Any], value: Any) -> None:
        found = CellEntry.read(value)
        if found is None:  # no cell's entry (forged, or of another shape): nothing to put back
            self.card.output("stderr", "nbcache: the cached entry holds no cell's variables\n")
            return
        for kind, *payload in found.outputs:
            self.card.output(kind, *payload)
        put_back(found, self.shell.user_ns)
        report = restored(hit, found.vars)
        ordered = tuple(by_interest(self.run.code.source, report.names, self.shell.user_ns))
        self.card.finished(replace(report, names=ordered))


# -- a background cell elsewhere: another process, a dask cluster ------------------------


def _elsewhere(
    task: Task[Any],
    run: CellRun,
    checkpoints: Remote | None,
    namespace: dict[str, Any],
    sink: Any,
    where: Placement,
) -> tuple[Any, Resume | None]:
    """Run the body where ``where`` runs work: inputs pickled there, bound variables
    brought back; its result, and where it resumed (None: from the start).

    The worker checkpoints the body into the store ``checkpoints`` names (None: it
    does not). Cancelling stops it as ``where`` can: a loky pool by stopping its
    workers, dask at the body's next progress step (keeping that step), any other
    executor if the body has not started yet (else it runs to its end); its variables
    are dropped either way.
    """
    code = run.code
    filename = remember(code.source, "background cell")
    binds = sorted(code.binds)
    if where.ships_modules:
        from ..tasks.daskpack import modules_imported_by

        inputs = {n: namespace[n] for n in code.reads if n in namespace}
        modules = modules_imported_by(code.source)
    else:
        inputs = {n: storable(namespace[n]) for n in code.reads if n in namespace}
        modules = []
    remote = where.start(
        run_in_worker,
        (code.source, inputs, binds, filename, checkpoints),
        name=task.name,
        modules=modules,
        on_progress=task.record,
        on_resumed=task.mark_resumed,
    )
    made: WorkerReply = _wait(task, where, remote, filename)
    for kind, text in (("stdout", made.stdout), ("stderr", made.stderr)):
        if text:
            sink(kind, text)
    for name, why in made.stayed.items():
        sink("stderr", f"nbcache: `{name}` stayed on the worker: it cannot be pickled ({why})\n")
    for name, value in made.vars.items():
        namespace[name] = _live(bring_back(value))
    return made.result, made.resumed


def _live(value: Any) -> Any:
    """A notebook function or class back from a worker carries the worker's copy of the
    notebook's globals: rebuilt through the store's pickler it reads the live ones."""
    if isinstance(value, (types.FunctionType, type)) and value.__module__ == "__main__":
        pickled = dump_parts(value)
        return load_parts(pickled.stream, pickled.buffers)
    return value


def _wait(task: Task[Any], where: Placement, remote: Future[Any], filename: str) -> Any:
    """``remote``'s result; stops it once the task is cancelled (then raises TaskCancelled)."""
    __tracebackhide__ = True
    stopping = False
    while True:
        try:
            return remote.result(timeout=0.2)  # short waits notice a cancel soon
        except FutureTimeout:
            if task.cancel_requested and not stopping:
                stopping = True
                if where.stop(remote):
                    raise TaskCancelled(f"task {task.name!r} was cancelled") from None
        except CancelledError:
            raise TaskCancelled(f"task {task.name!r} was cancelled") from None
        except BaseException as exc:  # noqa: BLE001 - the body's own, from its first line on
            # Re-raising the exception being handled keeps its own cause and context.
            raise exc.with_traceback(from_user_code(exc.__traceback__, filename))  # noqa: B904


def run_in_worker(
    source: str,
    inputs: dict[str, Any],
    binds: list[str],
    filename: str = "<background cell>",
    checkpoints: Remote | None = None,
) -> WorkerReply:
    """The body of a background cell, as a worker process runs it.

    What the body prints is captured for this thread only (a dask worker runs
    other tasks meanwhile); its progress steps report to the task running it.
    Given ``checkpoints``, its progress loop checkpoints into the kernel's store
    and resumes from the checkpoint an earlier run (or an earlier attempt of this
    task, on a worker that died) left there.
    """
    namespace: dict[str, Any] = {"__name__": "__main__"}
    namespace.update({name: bring_back(value) for name, value in inputs.items()})
    before = {name: id(value) for name, value in namespace.items()}
    if current_task() is not None:  # a dask worker: tqdm's steps go to the card
        follow_tqdm()
    worker = _Worker()
    routing.install()
    with routing.routed(worker.sink), ExitStack() as stack:
        taken = worker.checkpointing(stack, checkpoints, namespace)
        result = run_source(source, namespace, filename)
        if taken is not None:
            taken.finished()  # the kernel stores the entry, which replaces the checkpoint
    made, stay = _sent_back(namespace, binds, before)
    return WorkerReply(
        made,
        stay,
        "".join(worker.out["stdout"]),
        "".join(worker.out["stderr"]),
        None if result is NO_RESULT else result,
        worker.resumed[-1] if worker.resumed else None,
    )


class _Worker:
    """What a body run on a worker printed, what a checkpoint keeps of it, and where it
    resumed."""

    def __init__(self) -> None:
        self.out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.log = OutputLog()  # what a checkpoint keeps of the output, in order
        self.resumed: list[Resume] = []

    def sink(self, kind: str, *payload: Any) -> None:
        self.out[kind].append(payload[0])
        self.log.add(kind, *payload)

    def show(self, kind: str, *payload: Any) -> None:  # a resumed checkpoint's output, again
        if kind in self.out:
            self.out[kind].append(payload[0])

    def told(self, report: CellReport) -> None:
        if report.resumed is not None:
            self.resumed.append(report.resumed)
            task = current_task()
            if task is not None:
                task.mark_resumed(report.resumed.text)  # dask sends it to the card now

    def checkpointing(
        self, stack: ExitStack, checkpoints: Remote | None, namespace: dict[str, Any]
    ) -> Checkpointer | None:
        """Checkpoint the body's progress loop into the kernel's store, when it says
        where; the checkpoints (None: not checkpointed, and the output says why)."""
        if checkpoints is None:
            return None
        try:
            cache = worker_cache(checkpoints)
        except CheckpointError as exc:
            self.out["stderr"].append(f"nbcache: this cell is not checkpointed: {exc}\n")
            return None
        taken = stack.enter_context(
            checkpointing(
                cache,
                checkpoints.run,
                namespace,
                namespace_snapshot(namespace),
                self.log,
                Effects.now(),
                show=self.show,
                report=self.told,
            )
        )
        # the next run may start in another process: the last write lands first
        stack.callback(taken.settle)
        return taken


def _sent_back(
    namespace: dict[str, Any], binds: list[str], before: dict[str, int]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What a worker sends back of the names a body bound or rebound, as they pickle, and
    the names that stay on the worker since they cannot be pickled, with why."""
    names = {n for n in binds if n in namespace}
    names |= {n for n, v in namespace.items() if n != "__builtins__" and before.get(n) != id(v)}
    made = {n: storable(namespace[n]) for n in sorted(names) if not closed_file(namespace[n])}
    stay = {}
    if probe(made, for_store=False) is not None:  # only what can be pickled can come back
        stay = {
            n: f"{describe(v)['type']}: {e}"
            for n, v in made.items()
            if (e := probe(v, for_store=False))
        }
    return {n: v for n, v in made.items() if n not in stay}, stay
