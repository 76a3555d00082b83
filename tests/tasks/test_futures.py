"""Futures, executors and tasks: outcomes carried over, cancels propagated, callbacks isolated."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

from nbcache import CacheError
from nbcache.tasks.executors import (
    PoolPlacement,
    configure,
    configured_executor,
    get_executor,
    placement,
    runs_here,
)
from nbcache.tasks.futures import as_future, wrap_future
from nbcache.tasks.task import Task, TaskCancelled, current_task, progress
from nbcache.ui.widgets import TextCard


def test_plain_values_are_finished_futures() -> None:
    """A value that is not a future gives an already finished future."""
    assert as_future(5).result(0) == 5
    done = wrap_future("anything")
    assert done.done() and done.result() is None


def test_concurrent_future_passes_through() -> None:
    """as_future keeps a concurrent future as is; wrap_future drops its value."""
    source: Future[int] = Future()
    assert as_future(source) is source
    wrapped = wrap_future(source)
    assert not wrapped.done()
    source.set_result(3)
    assert wrapped.result(1) is None


def test_exceptions_are_carried() -> None:
    """A failing source fails the wrapper with the same exception object."""
    source: Future[int] = Future()
    wrapped = wrap_future(source)
    error = ValueError("boom")
    source.set_exception(error)
    assert wrapped.exception(1) is error


def test_cancel_propagates_both_ways() -> None:
    """Cancelling the wrapper cancels the source; a cancelled source cancels the wrapper."""
    source: Future[int] = Future()
    wrapped = wrap_future(source)
    assert wrapped.cancel()
    assert source.cancelled()
    other: Future[int] = Future()
    follows = wrap_future(other)
    other.cancel()
    with pytest.raises(CancelledError):
        follows.result(1)


def test_asyncio_futures_are_bridged() -> None:
    """An asyncio future's value, exception and cancellation reach a concurrent future."""

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        ok, bad, slow = loop.create_future(), loop.create_future(), loop.create_future()
        bridged = [as_future(ok), as_future(bad), as_future(slow)]
        ok.set_result(7)
        bad.set_exception(KeyError("k"))
        bridged[2].cancel()
        await asyncio.sleep(0)
        return [bridged, slow.cancelled()]

    (ok, bad, slow), source_cancelled = asyncio.run(scenario())
    assert ok.result(1) == 7
    assert isinstance(bad.exception(1), KeyError)
    assert slow.cancelled() and source_cancelled


def test_task_runs_and_reports_states() -> None:
    """A task goes queued, running, done, with times, and tells its callbacks each change."""
    seen: list[str] = []
    task: Task[int] = Task("sum")
    task.on_change(lambda t: seen.append(t.state))
    assert task.state == "queued"
    task.submit_to(get_executor("thread"), lambda: sum(range(10)))
    assert task.future.result(5) == 45
    assert task.state == "done"
    assert seen[0] == "running" and seen[-1] == "done"
    assert task.elapsed >= 0 and task.ended is not None


def test_failed_task_keeps_the_exception() -> None:
    """A body that raises fails the task with its own exception."""
    task: Task[int] = Task("bad")
    error = ZeroDivisionError("x")

    def body() -> int:
        raise error

    task.submit_to(get_executor("thread"), body)
    assert task.future.exception(5) is error
    assert task.state == "failed"


def test_a_raising_callback_never_breaks_the_task(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that raises is logged; the task and other callbacks carry on."""
    task: Task[str] = Task("robust")
    later: list[str] = []

    def broken(_: Task[str]) -> None:
        raise RuntimeError("display died")

    task.on_change(broken)
    task.on_change(lambda t: later.append(t.state))
    with caplog.at_level(logging.ERROR, logger="nbcache"):
        task.run(lambda: "ok")
    assert task.future.result(0) == "ok"
    assert later[-1] == "done"
    assert "display died" in caplog.text


def test_cancel_a_queued_task() -> None:
    """Cancelling a task that has not started stops it at once; its body never runs."""
    ran: list[int] = []
    task: Task[int] = Task("queued")
    assert task.cancel()
    task.run(lambda: ran.append(1) or 1)
    assert ran == [] and task.state == "cancelled"


def test_cancel_a_running_task_at_its_next_step() -> None:
    """A running body stops at its next progress step once cancelled; until then the task
    reads cancelling, and its text card says so once."""
    started, release = threading.Event(), threading.Event()
    steps: list[int] = []

    def body() -> int:
        for i in progress(range(1000)):
            if i == 0:
                started.set()
                release.wait(5)
            steps.append(i)
        return 1

    task: Task[int] = Task("long")
    lines: list[str] = []
    task.on_change(TextCard(task, lines.append).update)
    task.submit_to(get_executor("thread"), body)
    assert started.wait(5)
    assert task.cancel()
    assert task.state == "cancelling"
    release.set()
    with pytest.raises(TaskCancelled):
        task.future.result(5)
    assert task.state == "cancelled"
    assert steps == [0]
    assert task.settled.wait(5)
    assert [line for line in lines if "cancelling" in line] == [
        "nbcache: long cancelling: it stops at its next progress step"
    ]
    assert lines[-1].startswith("nbcache: long cancelled after")


def test_progress_reports_to_the_current_task() -> None:
    """progress() sets done and total steps on the task running it; outside one it is plain."""
    assert list(progress([1, 2])) == [1, 2]
    assert current_task() is None
    task: Task[list[int]] = Task("count")
    task.run(lambda: list(progress(iter(range(3)), total=3)))
    assert (task.done_steps, task.total_steps) == (3, 3)


def test_process_executor_runs_closures() -> None:
    """The process executor (loky) runs a closure, as a notebook-defined function would be."""
    offset = 10
    task: Task[int] = Task("remote")
    task.submit_to(get_executor("process"), lambda: offset + 5)
    assert task.future.result(60) == 15
    assert task.state == "done"


def test_configure() -> None:
    """configure() picks the default executor and rejects unknown names."""
    pool = ThreadPoolExecutor(1)
    try:
        configure(pool)
        assert get_executor() is pool
    finally:
        configure("thread")
        pool.shutdown()
    assert isinstance(get_executor(), ThreadPoolExecutor)
    with pytest.raises(CacheError, match="unknown executor"):
        configure("gpu")
    with pytest.raises(CacheError, match="cannot run work on 3"):
        configure(3)
    with pytest.raises(CacheError, match="scheduler address"):
        configure(dask=42)
    assert configured_executor() == "thread"


def test_tqdm_drives_the_task_progress() -> None:
    """A tqdm bar inside a task's body reports to the task; outside one it changes nothing."""
    import tqdm

    task: Task[int] = Task("bars")
    task.run(lambda: sum(1 for _ in tqdm.tqdm(range(50), disable=False, mininterval=0)))
    assert (task.done_steps, task.total_steps) == (50, 50)
    assert sum(1 for _ in tqdm.tqdm(range(3))) == 3  # no task: plain tqdm


def test_tqdm_imported_after_a_task_asked_to_follow_it_drives_the_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh worker has not imported tqdm when the body starts: the body's own import
    is what makes its bars report, whatever name the body reaches tqdm by."""
    import importlib

    import tqdm  # noqa: F401 - its modules are taken out below and put back after

    from nbcache.tasks import task as tasks

    for name in [n for n in sys.modules if n == "tqdm" or n.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(tasks, "_hooked", set())
    task: Task[int] = Task("bars")

    def body() -> int:
        fresh = importlib.import_module("tqdm")  # a module the body imports first
        return sum(1 for _ in fresh.trange(20, disable=False, mininterval=0))

    task.run(body)
    assert task.future.result() == 20
    assert (task.done_steps, task.total_steps) == (20, 20)
    assert not [f for f in sys.meta_path if type(f).__module__ == tasks.__name__]


class _Inline(Executor):
    """An executor of the user's own, neither a thread pool nor loky: its calls run
    elsewhere as far as nbcache knows, and stop only before they start."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_executors_declare_where_work_runs_and_how_it_stops() -> None:
    assert runs_here("thread") and runs_here(ThreadPoolExecutor(1))
    assert not runs_here("process") and not runs_here("dask") and not runs_here(_Inline())
    threads = placement("thread")
    assert threads.here and not threads.ships_modules
    assert threads.start(pow, (2, 5)).result(5) == 32
    own = placement(_Inline())
    assert not own.here and not own.ships_modules
    done = own.start(pow, (2, 3))
    assert done.result() == 8 and own.stop(done) is False  # it ran: nothing stops it now
    pending: Future[Any] = Future()
    assert own.stop(pending) is True and pending.cancelled()  # not started: cancelled


def test_a_loky_pool_stops_by_stopping_its_workers() -> None:
    pool = placement("process")
    assert isinstance(pool, PoolPlacement) and pool.kills_workers and not pool.here
