"""The public face of :mod:`nbcache.tasks`: futures, executors and progress."""

from __future__ import annotations

from .tasks.executors import configure, get_executor
from .tasks.futures import as_future, wrap_future
from .tasks.task import Task, TaskCancelled, progress

__all__ = [
    "Task",
    "TaskCancelled",
    "as_future",
    "configure",
    "get_executor",
    "progress",
    "wrap_future",
]
