"""Tasks: background work with a name, a state, progress and output.

:class:`Task` composes a future (never subclasses it) with a name, a state,
start and end times, progress, captured output and change callbacks; a
callback that raises is logged and never breaks the task.  :func:`progress`
wraps an iterable in a task's body: it reports progress and stops the body at
the next step once the task is cancelled.  Until the body lets go, a
cancelled task reads ``cancelling``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import itertools
import logging
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..errors import CacheError
from .futures import settle_with

__all__ = [
    "LoopHook",
    "State",
    "Task",
    "TaskCancelled",
    "current_task",
    "follow_tqdm",
    "loop_hook",
    "progress",
]

T = TypeVar("T")
State = Literal["queued", "running", "cancelling", "done", "failed", "cancelled"]
log = logging.getLogger("nbcache")


class TaskCancelled(CacheError):
    """Raised inside a task's body, at its next progress step, once it was cancelled."""


# -- tasks --------------------------------------------------------------------------

_current = threading.local()
_hook_lock = threading.Lock()


def current_task() -> Task[Any] | None:
    """The task whose body runs on this thread, if any."""
    return getattr(_current, "task", None)


class Task(Generic[T]):
    """A named piece of background work and what a card shows of it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.future: Future[T] = Future()
        self.started: float | None = None
        self.ended: float | None = None
        self.done_steps = 0
        self.total_steps: int | None = None
        self._first_step: int | None = None  # the count of the first report, in this run
        self.output: list[tuple[str, str]] = []
        self._cancel_requested = threading.Event()
        self._callbacks: list[Callable[[Task[T]], None]] = []
        self._remote: Future[T] | None = None
        self._stop_remote: Callable[[Future[T]], Any] | None = None
        self.settled = threading.Event()  # set once the end was told to every callback
        self.expected: float | None = None  # seconds the last run of the same work took
        self.resumed = ""  # ``resumed at step 412 of 1000, saved 3 min ago``: where it picked up
        self.future.add_done_callback(self._finished)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} state={self.state}>"

    @property
    def state(self) -> State:
        if self.future.cancelled():
            return "cancelled"
        if self.future.done():
            exc = self.future.exception()
            if isinstance(exc, (TaskCancelled, CancelledError)):
                return "cancelled"
            return "failed" if exc is not None else "done"
        if self._cancel_requested.is_set():
            return "cancelling"  # asked to stop; its body has not let go yet
        return "running" if self.started is not None else "queued"

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.time()) - self.started

    def on_change(self, callback: Callable[[Task[T]], None]) -> None:
        """Call ``callback(task)`` on every change of state or progress."""
        self._callbacks.append(callback)

    def _changed(self) -> None:
        for callback in list(self._callbacks):
            try:
                callback(self)
            except Exception:  # a broken display must never break the work
                log.exception("nbcache: a callback of task %r failed", self.name)

    def _finished(self, _future: Future[T]) -> None:
        self.ended = self.ended or time.time()
        self._changed()
        self.settled.set()

    def run(self, fn: Callable[[], T]) -> None:
        """Run ``fn`` as this task's body on the current thread, recording its outcome."""
        if self.future.done() or not self.future.set_running_or_notify_cancel():
            return  # cancelled while it waited in the queue
        self.started = time.time()
        self._changed()
        _current.task = self
        follow_tqdm()
        try:
            if self._cancel_requested.is_set():
                raise TaskCancelled(f"task {self.name!r} was cancelled before it started")
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - the body's own, kept on the future
            self.ended = time.time()
            self.future.set_exception(exc)
        else:
            self.ended = time.time()
            self.future.set_result(result)
        finally:
            _current.task = None

    def submit_to(self, executor: Executor, fn: Callable[[], T]) -> Task[T]:
        """Run ``fn`` on ``executor``; a process executor's result comes back here.

        If the task is cancelled while ``fn`` runs elsewhere, its result is dropped.
        """
        if isinstance(executor, ThreadPoolExecutor):
            executor.submit(self.run, fn)
            return self
        remote = executor.submit(fn)
        self.started = time.time()
        self.future.set_running_or_notify_cancel()
        self._remote = remote
        self._stop_remote = getattr(executor, "stop", None)  # dask: stops a running call
        future, keep = self.future, self._unless_cancelled
        remote.add_done_callback(lambda done: settle_with(future, done, keep))
        return self

    def _unless_cancelled(self, result: T) -> T:
        if self._cancel_requested.is_set():
            raise TaskCancelled(f"task {self.name!r} was cancelled")
        return result

    @property
    def cancel_requested(self) -> bool:
        """Whether someone asked the task to stop (it may still be stopping)."""
        return self._cancel_requested.is_set()

    def cancel(self) -> bool:
        """Stop the task: at once if queued, at its next progress step if running in a
        thread, by the executor if running elsewhere. True if it will stop.

        Until the body lets go the task reads ``cancelling``, then ``cancelled``.
        """
        self._cancel_requested.set()
        remote = self._remote
        if remote is not None and self._stop_remote is not None and not self.future.done():
            self._stop_remote(remote)  # the remote's end (or its cancel) ends this task
            self._changed()
            return True
        if remote is not None and remote.cancel():
            return True  # its done-callback cancels this task's future
        if self.future.cancel():
            self.future.set_running_or_notify_cancel()
            return True
        self._changed()
        return not self.future.done()

    @property
    def start_step(self) -> int:
        """The steps done before this run began: those a resumed run skipped (its first
        report starts there), 0 for a run from the start."""
        if not self.resumed or self._first_step is None:
            return 0
        return self._first_step

    @property
    def rate(self) -> float | None:
        """Steps a second this run made: the steps done since it started over the time
        since then (steps a resumed run skipped took no time here); None before any."""
        steps, elapsed = self.done_steps - self.start_step, self.elapsed
        return steps / elapsed if steps > 0 and elapsed > 0 else None

    def record(self, done: int, total: int | None = None) -> None:
        """Record progress made elsewhere (a worker's report) and tell the callbacks."""
        if self._first_step is None and self.started is not None:
            self._first_step = done
        self.done_steps = done
        if total is not None:
            self.total_steps = total
        self._changed()

    def mark_resumed(self, text: str) -> None:
        """The body picked up an unfinished run at a checkpoint; ``text`` says where."""
        self.resumed = text
        self._changed()

    def step(self, done: int, total: int | None = None) -> None:
        """Record progress; raises TaskCancelled if the task was cancelled meanwhile."""
        self.record(done, total)
        if self._cancel_requested.is_set():
            raise TaskCancelled(f"task {self.name!r} was cancelled")


_hooked: set[str] = set()


def follow_tqdm() -> None:
    """Let tqdm bars inside a task's body drive its progress: now if tqdm is imported, else
    the moment anything imports it (in a fresh worker process, the body itself).

    Only threads running a task report; everywhere else tqdm behaves as always.
    """
    std = sys.modules.get("tqdm.std")
    if std is not None:
        _follow(std)
        return
    with _hook_lock:
        if not any(isinstance(finder, _FollowOnImport) for finder in sys.meta_path):
            sys.meta_path.insert(0, _FollowOnImport())


def _follow(std: types.ModuleType) -> None:
    """Report the steps of ``tqdm.std``'s bars to the task running them."""
    if "tqdm" in _hooked:
        return
    with _hook_lock:
        if "tqdm" in _hooked:
            return
        original = std.tqdm.update

        def update(bar: Any, n: float | None = 1) -> Any:
            shown = original(bar, n)
            task = current_task()
            if task is not None:
                task.step(int(bar.n), int(bar.total) if bar.total else None)
            return shown

        std.tqdm.update = update
        std.tqdm.__iter__ = _followed_iter(std.tqdm.__iter__)
        _hooked.add("tqdm")


class _FollowOnImport(importlib.abc.MetaPathFinder):
    """Finds ``tqdm.std`` as the next finder would, and follows it once it has run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tqdm.std":
            return None
        spec: importlib.machinery.ModuleSpec | None = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        run = getattr(spec.loader, "exec_module", None) if spec is not None else None
        if spec is None or run is None:
            return spec

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            with suppress(ValueError):  # another thread took it out first
                sys.meta_path.remove(self)
            _follow(module)

        # a path finder makes a loader for this one module: changing it changes no other
        spec.loader.exec_module = exec_module  # type: ignore[method-assign,union-attr]
        return spec


def _followed_iter(original: Callable[[Any], Iterator[Any]]) -> Callable[[Any], Iterator[Any]]:
    """tqdm's ``__iter__``, reporting to this thread's loop hook as :func:`progress` does
    (a bar made with an iterable: ``tqdm(xs)``, ``trange(n)``); unchanged without a hook."""

    def iterate(bar: Any) -> Iterator[Any]:
        hook: LoopHook | None = getattr(_current, "loop", None)
        done = hook.enter(bar.total) if hook is not None and not bar.disable else None
        if hook is None or done is None:
            yield from original(bar)
            return
        try:
            if done:
                bar.iterable = _skipping(bar.iterable, done)
                bar.n = bar.last_print_n = done
            task = current_task()
            for index, item in enumerate(original(bar), done + 1):
                yield item
                hook.after(index, task is not None and task.cancel_requested)
        finally:
            hook.leave()

    return iterate


class LoopHook(Protocol):
    """What a running cell installs for its thread's progress loops (its checkpoints)."""

    def enter(self, total: int | None) -> int | None:
        """A loop starts: how many of its steps are done already; None: not followed."""

    def after(self, step: int, force: bool = False) -> None:
        """Step ``step`` (1-based) is done; ``force``: keep this point now (a cancel)."""

    def leave(self) -> None:
        """The loop ended, or was left."""


@contextmanager
def loop_hook(hook: LoopHook) -> Iterator[LoopHook]:
    """Within the block, :func:`progress` loops on this thread report to ``hook``."""
    previous = getattr(_current, "loop", None)
    _current.loop = hook
    try:
        yield hook
    finally:
        _current.loop = previous


def _skipping(iterable: Iterable[T], done: int) -> Iterable[T]:
    """``iterable`` without its first ``done`` items: a sequence is indexed from there,
    anything else iterated again and its first items dropped."""
    if isinstance(iterable, Sequence):
        return (iterable[i] for i in range(done, len(iterable)))
    return itertools.islice(iterable, done, None)


def progress(iterable: Iterable[T], total: int | None = None) -> Iterator[T]:
    """Iterate, reporting progress to the current task (if any) and stopping it at the
    next step once it is cancelled.

    In a ``%%cache`` cell the outermost such loop checkpoints the cell, and a
    run that resumes skips the steps already done (see nbcache.run.checkpoint).
    """
    task = current_task()
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    hook: LoopHook | None = getattr(_current, "loop", None)
    done = hook.enter(total) if hook is not None else None
    if done is None:
        hook, done = None, 0
    try:
        if task is not None:
            task.step(done, total)
        for index, item in enumerate(_skipping(iterable, done) if done else iterable, done + 1):
            yield item
            if hook is not None:
                hook.after(index, task is not None and task.cancel_requested)
            if task is not None:
                task.step(index, total)
    finally:
        if hook is not None:
            hook.leave()
