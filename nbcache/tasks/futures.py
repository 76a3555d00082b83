"""Futures, executors and tasks: the part of background work that knows nothing of IPython.

- :func:`as_future` turns a ``concurrent.futures`` future, an asyncio future, a
  dask future or a plain value into a ``concurrent.futures.Future`` with the
  same outcome; :func:`wrap_future` does the same but drops the value.
- :func:`get_executor` gives the ``thread`` pool (the default), the ``process``
  pool (loky, through joblib, so functions defined in a notebook run), a
  ``dask`` cluster (see :mod:`nbcache.tasks.dask`; ``distributed`` is
  imported only then), or any ``concurrent.futures.Executor`` handed to
  :func:`configure`.
- :class:`Task` composes a future (never subclasses it) with a name, a state,
  start and end times, progress, captured output and change callbacks; a
  callback that raises is logged and never breaks the task.
- :func:`progress` wraps an iterable in a task's body: it reports progress and
  stops the body at the next step once the task is cancelled.  Until the body
  lets go, a cancelled task reads ``cancelling``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from typing import Any, Generic, Literal, TypeVar

from ..errors import CacheError, ExecutorError

__all__ = [
    "Task",
    "TaskCancelled",
    "as_future",
    "check_executor",
    "configure",
    "configured_executor",
    "current_task",
    "get_executor",
    "is_dask_client",
    "progress",
    "settle",
    "shutdown",
    "wrap_future",
]

T = TypeVar("T")
State = Literal["queued", "running", "cancelling", "done", "failed", "cancelled"]
log = logging.getLogger("nbcache")


class TaskCancelled(CacheError):
    """Raised inside a task's body, at its next progress step, once it was cancelled."""


# -- bridging futures ------------------------------------------------------------------


def _cancel(target: Future[Any]) -> None:
    """Cancel ``target``; one already running ends with CancelledError instead."""
    if target.cancel():
        target.set_running_or_notify_cancel()  # wakes wait() and as_completed()
    elif not target.done():
        target.set_exception(CancelledError())


def _settle(target: Future[Any], source: Any, value: Callable[[Any], Any]) -> None:
    """Give ``target`` the outcome of the finished ``source``."""
    if target.done():
        return
    try:
        if source.cancelled():
            _cancel(target)
            return
        target.set_result(value(source.result()))
    except (CancelledError, asyncio.CancelledError):
        _cancel(target)
    except BaseException as exc:  # noqa: BLE001 - the source's own failure, carried over
        target.set_exception(exc)


def settle(target: Future[Any], source: Any) -> None:
    """Give ``target`` the outcome of the finished future ``source``: its value, its
    exception or its cancellation (nothing if ``target`` is already done)."""
    _settle(target, source, lambda result: result)


def _from_distributed(x: Any, name: str) -> bool:
    """Whether ``x`` is an instance of distributed's class ``name`` (without importing it)."""
    return any(
        (cls.__module__ or "").startswith("distributed") and cls.__name__ == name
        for cls in type(x).__mro__
    )


def _is_dask_future(x: Any) -> bool:
    return _from_distributed(x, "Future") and hasattr(x, "add_done_callback")


def is_dask_client(x: Any) -> bool:
    """Whether ``x`` is a ``distributed.Client`` (never imports distributed)."""
    return _from_distributed(x, "Client")


def _bridge(source: Any, value: Callable[[Any], Any]) -> Future[Any]:
    target: Future[Any] = Future()
    target.source = source  # type: ignore[attr-defined]  # a dask future dropped is never run
    if isinstance(source, asyncio.Future):
        loop = source.get_loop()
        source.add_done_callback(lambda done: _settle(target, done, value))
        target.add_done_callback(
            lambda done: done.cancelled() and loop.call_soon_threadsafe(source.cancel)
        )
    else:
        source.add_done_callback(lambda done: _settle(target, done, value))
        target.add_done_callback(lambda done: done.cancelled() and source.cancel())
    return target


def as_future(x: Any) -> Future[Any]:
    """A ``concurrent.futures.Future`` with ``x``'s outcome, already done when ``x`` is
    not a future; cancelling it cancels ``x``."""
    if isinstance(x, Future):
        return x
    if isinstance(x, asyncio.Future) or _is_dask_future(x):
        return _bridge(x, lambda result: result)
    done: Future[Any] = Future()
    done.set_result(x)
    return done


def wrap_future(x: Any) -> Future[None]:
    """A future that finishes when ``x`` does and carries its exception, not its value."""
    if not (isinstance(x, (Future, asyncio.Future)) or _is_dask_future(x)):
        done: Future[None] = Future()
        done.set_result(None)
        return done
    return _bridge(x, lambda result: None)


# -- executors ------------------------------------------------------------------------

_lock = threading.Lock()
_configured: Executor | str = "thread"
_threads: ThreadPoolExecutor | None = None
_NAMES = ("thread", "process", "dask")


def configure(executor: Executor | str | Any = "thread", *, dask: Any = None) -> None:
    """Choose where background work runs when no executor is named: ``Memoized.submit``,
    and ``%%cache -b`` without ``--executor``.

    Each call sets the whole configuration: what it leaves out goes back to its
    default, so ``configure()`` alone restores the thread pool and ``NBCACHE_DASK``.

    Args:
        executor: ``"thread"`` (nbcache's thread pool, the default),
            ``"process"`` (a loky process pool: functions defined in the
            notebook work there), ``"dask"`` (the cluster ``dask`` names), a
            ``distributed.Client`` (the same as ``executor="dask",
            dask=client``), or any ``concurrent.futures.Executor``.
        dask: the cluster that ``"dask"`` and ``%%cache --executor dask`` use: a
            ``distributed.Client``, a scheduler address (``"tcp://host:port"``)
            or ``"local"`` (a local cluster nbcache starts once, when first
            needed, and closes at exit). None: the ``NBCACHE_DASK`` environment
            variable, which takes the same addresses.

    Raises:
        ExecutorError: an unknown executor name, a ``dask`` that is neither a
            client nor an address, or dask without ``distributed`` installed
            (``pip install "nbcache[dask]"``).
    """
    global _configured
    if is_dask_client(executor):
        executor, dask = "dask", executor
    elif not isinstance(executor, Executor) and executor not in _NAMES:
        raise _unknown(executor)
    if dask is not None or executor == "dask" or "nbcache.tasks.dask" in sys.modules:
        from . import dask as dask_executor

        dask_executor.set_cluster(dask)
        if executor == "dask":
            dask_executor.check()
    with _lock:
        _configured = executor


def _unknown(kind: Any) -> ExecutorError:
    what = f"unknown executor {kind!r}" if isinstance(kind, str) else f"cannot run work on {kind!r}"
    return ExecutorError(
        f"{what}: use 'thread', 'process', 'dask', a distributed.Client or a "
        "concurrent.futures.Executor"
    )


def configured_executor() -> Executor | str:
    """What :func:`configure` chose: a name (``"thread"``, ``"process"``, ``"dask"``) or an
    ``Executor``."""
    return _configured


def check_executor(kind: Executor | str | Any = None) -> None:
    """Fail now, without waiting for anything, if ``kind`` (default: the configured one)
    cannot run work: an unknown name, or dask not installed or not configured.

    Raises:
        ExecutorError: with a one-line message that says what to do.
    """
    chosen = _configured if kind is None else kind
    if isinstance(chosen, Executor) or chosen in ("thread", "process"):
        return
    if chosen == "dask" or is_dask_client(chosen):
        from . import dask as dask_executor

        dask_executor.check(chosen if is_dask_client(chosen) else None)
        return
    raise _unknown(chosen)


def get_executor(kind: Executor | str | Any = None) -> Executor:
    """The executor for ``kind`` (default: the configured one).

    ``"dask"`` (or a ``distributed.Client``) gives a
    :class:`~nbcache.tasks.dask.DaskExecutor`; the first call may connect to
    the scheduler, or start the local cluster, before it returns.

    Raises:
        ExecutorError: ``kind`` cannot run work (see :func:`check_executor`), or
            its dask cluster cannot be reached.
    """
    global _threads
    chosen = _configured if kind is None else kind
    if isinstance(chosen, Executor):
        return chosen
    if chosen == "dask" or is_dask_client(chosen):
        from . import dask as dask_executor

        return dask_executor.executor(chosen if is_dask_client(chosen) else None)
    if chosen == "process":
        from joblib.externals.loky import get_reusable_executor

        return get_reusable_executor()  # type: ignore[no-any-return]
    if chosen != "thread":
        raise _unknown(chosen)
    with _lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(thread_name_prefix="nbcache")
        return _threads


def shutdown() -> None:
    """Stop the thread pool nbcache started (running tasks finish first)."""
    global _threads
    with _lock:
        pool, _threads = _threads, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


# -- tasks --------------------------------------------------------------------------

_current = threading.local()


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
        self.output: list[tuple[str, str]] = []
        self._cancel_requested = threading.Event()
        self._callbacks: list[Callable[[Task[T]], None]] = []
        self._remote: Future[T] | None = None
        self._stop_remote: Callable[[Future[T]], Any] | None = None
        self.settled = threading.Event()  # set once the end was told to every callback
        self.expected: float | None = None  # seconds the last run of the same work took
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
        _follow_tqdm()
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
        remote.add_done_callback(lambda done: _settle(self.future, done, self._unless_cancelled))
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

    def record(self, done: int, total: int | None = None) -> None:
        """Record progress made elsewhere (a worker's report) and tell the callbacks."""
        self.done_steps = done
        if total is not None:
            self.total_steps = total
        self._changed()

    def step(self, done: int, total: int | None = None) -> None:
        """Record progress; raises TaskCancelled if the task was cancelled meanwhile."""
        self.record(done, total)
        if self._cancel_requested.is_set():
            raise TaskCancelled(f"task {self.name!r} was cancelled")


_hooked: set[str] = set()


def _follow_tqdm(load: bool = False) -> None:
    """Let tqdm bars inside a task's body drive its progress (once tqdm is imported, or
    now with ``load`` when tqdm is installed: a worker process has not imported it yet).

    Only threads running a task report; everywhere else tqdm behaves as always.
    """
    if load and "tqdm.std" not in sys.modules:
        try:
            importlib.import_module("tqdm.std")
        except ImportError:
            return
    std = sys.modules.get("tqdm.std")
    if std is None or "tqdm" in _hooked:
        return
    with _lock:
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
        _hooked.add("tqdm")


def progress(iterable: Iterable[T], total: int | None = None) -> Iterator[T]:
    """Iterate, reporting progress to the current task (if any) and stopping it at the
    next step once it is cancelled."""
    task = current_task()
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if task is not None:
        task.step(0, total)
    for index, item in enumerate(iterable, 1):
        yield item
        if task is not None:
            task.step(index, total)
