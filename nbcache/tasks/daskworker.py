"""What a dask worker runs for nbcache: the pickled call as a task of its own, its
progress sent back to the client as events, stopped at its next progress step when
the client asks, and the notebook's modules importable while it runs (see
:mod:`nbcache.tasks.dask` for the client's side)."""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import ExecutorError
from .task import Task, TaskCancelled

__all__ = ["Cancelled", "run_packed", "stop_here"]

_PROGRESS_EVERY = 0.1  # seconds between progress events from one task
_REFUSE_FOR = 3600.0  # seconds a worker remembers a cancelled key it never started


@dataclass(frozen=True)
class Cancelled:
    """What a worker returns for a task it stopped (raising would log an error there)."""

    key: str


_here_lock = threading.Lock()
_here: dict[str, Task[Any]] = {}  # tasks running in this worker process, by key
_refused: dict[str, float] = {}  # keys cancelled before they started here, and when
_shipped: dict[str, tuple[int, Any]] = {}  # name -> (users, the module it replaced)
_ABSENT = object()


def stop_here(key: str) -> bool:
    """On every worker, through ``Client.run``: stop ``key`` at its next progress step if
    it runs here (True); otherwise refuse to start it later (False)."""
    with _here_lock:
        task = _here.get(key)
        if task is None:
            now = time.monotonic()
            for old in [k for k, when in _refused.items() if now - when > _REFUSE_FOR]:
                del _refused[old]
            _refused[key] = now
            return False
    task.cancel()
    return True


def run_packed(key: str, topic: str, stream: bytes, buffers: list[Any]) -> Any:
    """What a worker runs: the pickled call, as a task whose progress goes to ``topic``."""
    worker = importlib.import_module("distributed").get_worker()
    task: Task[Any] = Task(key)
    with _here_lock:
        if _refused.pop(key, None) is not None:
            return Cancelled(key)
        _here[key] = task
    try:
        worker.log_event(topic, {"key": key, "event": "start"})
        fn, args, kwargs, modules = _unpack(stream, buffers, worker.address)
        task.on_change(_Forward(worker, topic, key))
        with _importable(modules):
            task.run(lambda: fn(*args, **kwargs))
    finally:
        with _here_lock:
            _here.pop(key, None)
    if task.future.cancelled():
        return Cancelled(key)
    exc = task.future.exception()
    if isinstance(exc, TaskCancelled):
        return Cancelled(key)
    if exc is not None:
        raise exc
    return task.future.result()


def _unpack(stream: bytes, buffers: list[Any], where: str) -> Any:
    # dask hands buffers over read-only: arrays made from them must stay writable
    writable = [bytearray(b) if memoryview(b).readonly else b for b in buffers]
    try:
        return pickle.loads(stream, buffers=writable)
    except ModuleNotFoundError as exc:
        raise ExecutorError(
            f"the dask worker {where} cannot load this work: it needs the module "
            f"{exc.name!r}, which is not importable there. Install it where the workers "
            "run, or keep it beside the notebook so nbcache sends it (see "
            "nbcache.tasks.dask)."
        ) from exc
    except Exception as exc:
        raise ExecutorError(
            f"the dask worker {where} cannot load this work: {type(exc).__name__}: {exc}"
        ) from exc


class _Forward:
    """Sends a worker task's progress to the client: at most every 0.1 s, and its last step."""

    def __init__(self, worker: Any, topic: str, key: str) -> None:
        self._worker = worker
        self._topic = topic
        self._key = key
        self._sent = 0.0

    def __call__(self, task: Task[Any]) -> None:
        now = time.monotonic()
        last = task.future.done() or task.done_steps == task.total_steps
        if not last and now - self._sent < _PROGRESS_EVERY:
            return
        self._sent = now
        message = {
            "key": self._key,
            "event": "progress",
            "done": task.done_steps,
            "total": task.total_steps,
            "resumed": task.resumed,  # in every report: a throttled one may be skipped
        }
        self._worker.log_event(self._topic, message)


@contextmanager
def _importable(modules: Mapping[str, types.ModuleType]) -> Iterator[None]:
    """Make ``modules`` importable by name in this worker process while the block runs.

    Tasks running at once that ship the same module share it; the module that
    was there before (or its absence) comes back when the last of them ends.
    """
    with _here_lock:
        for name, module in modules.items():
            users, replaced = _shipped.get(name, (0, sys.modules.get(name, _ABSENT)))
            _shipped[name] = (users + 1, replaced)
            sys.modules[name] = module
    try:
        yield
    finally:
        with _here_lock:
            for name in modules:
                users, replaced = _shipped.pop(name)
                if users > 1:
                    _shipped[name] = (users - 1, replaced)
                elif replaced is _ABSENT:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = replaced
