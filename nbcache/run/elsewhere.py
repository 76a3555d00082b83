"""A memoized call sent to another executor (a process pool, dask): the function alone
runs there, and its result is kept here, in memory and the store, before the caller's
future ends.  One future per key while it runs: submitting a call already on its way
gives the same one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from ..cache.core import Hit, Turn
from ..tasks.executors import get_executor
from ..tasks.futures import settle

__all__ = ["Elsewhere", "run_coroutine"]


class Elsewhere:
    """A memoized function's calls running on another executor, by key."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock  # the memoized function's own: its counters change with these
        self._running: dict[str, Future[Any]] = {}

    def submit(
        self,
        executor: Executor,
        call: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
        *,
        begin: Callable[[], Hit[Any] | Turn | None],
        found: Callable[[Hit[Any]], None],
        wait: Callable[[], Future[Any]],
        keep: Callable[[Turn, Any, float], None],
    ) -> Future[Any]:
        """Run ``call(*args, **kwargs)`` on ``executor`` unless ``begin`` finds its entry
        (``found`` counts the hit) or another caller holds the key (then ``wait`` for its
        entry here); ``keep`` stores what came back before the future ends."""
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                return running
            landed: Future[Any] = Future()
            self._running[key] = landed
        turn = begin()
        if isinstance(turn, Hit):  # its entry landed since we looked
            with self._lock:
                del self._running[key]
            found(turn)
            landed.set_result(turn.value)
            return landed
        if turn is None:
            waiting = wait()
            waiting.add_done_callback(lambda done: self._settle(key, landed, done))
            landed.add_done_callback(lambda mine: mine.cancelled() and waiting.cancel())
            return landed
        start = time.perf_counter()
        try:
            remote = executor.submit(call, *args, **kwargs)
        except BaseException:
            with self._lock:
                del self._running[key]
            turn.abandon()
            raise
        # The remote's callbacks run on its executor's own thread: keep the result on ours.
        remote.add_done_callback(
            lambda done: get_executor("thread").submit(
                self._land, key, done, landed, start, turn, keep
            )
        )
        landed.add_done_callback(lambda mine: mine.cancelled() and remote.cancel())
        return landed

    def _settle(self, key: str, landed: Future[Any], done: Future[Any]) -> None:
        with self._lock:
            self._running.pop(key, None)
        settle(landed, done)

    def _land(
        self,
        key: str,
        done: Future[Any],
        landed: Future[Any],
        start: float,
        turn: Turn,
        keep: Callable[[Turn, Any, float], None],
    ) -> None:
        """Keep what a call elsewhere returned (memory and store), then finish ``landed``;
        the claim ends once the entry is stored, so a waiting process finds it."""
        try:
            if not done.cancelled() and done.exception() is None:
                keep(turn, done.result(), time.perf_counter() - start)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            if not landed.done():
                landed.set_exception(exc)
        finally:
            turn.abandon()
            with self._lock:
                self._running.pop(key, None)
            settle(landed, done)


def run_coroutine(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """An async function's call, run to its end on a worker."""
    return asyncio.run(fn(*args, **kwargs))
