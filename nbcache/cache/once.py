"""One computation per key in this process: the first caller computes, the others wait.

Among processes the store's lease does the same (see :mod:`nbcache.cache.core`);
this guard keeps threads of one process from all taking turns at the lease, and
keeps a value that is only in memory from being computed twice.  A waiter gets
a ``concurrent.futures.Future``, so threads block on it and coroutines await it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

__all__ = ["Inflight"]


class Inflight:
    """The keys being computed in this process right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Future[None]] = {}

    def enter(self, key: str) -> Future[None] | None:
        """None: the caller computes ``key`` now and must :meth:`leave` it after.
        A future: another caller computes it; look the key up again once it is done."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                self._running[key] = Future()
            return running

    def leave(self, key: str) -> None:
        """The computation of ``key`` ended, stored or not: wake whoever waits for it."""
        with self._lock:
            done = self._running.pop(key, None)
        if done is not None:
            done.set_result(None)
