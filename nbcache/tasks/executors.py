"""Executors: where background work runs (threads, loky processes, dask, any Executor).

:func:`get_executor` gives the ``thread`` pool (the default), the ``process``
pool (loky, through joblib, so functions defined in a notebook run), a
``dask`` cluster (see :mod:`nbcache.tasks.dask`; ``distributed`` is imported
only then), or any ``concurrent.futures.Executor`` handed to :func:`configure`.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..errors import ExecutorError
from .futures import is_dask_client

__all__ = ["check_executor", "configure", "configured_executor", "get_executor", "shutdown"]

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
