"""Executors: where background work runs (threads, loky processes, dask, any Executor).

:func:`get_executor` gives the ``thread`` pool (the default), the ``process``
pool (loky, through joblib, so functions defined in a notebook run), a
``dask`` cluster (see :mod:`nbcache.tasks.dask`; ``distributed`` is imported
only then), or any ``concurrent.futures.Executor`` handed to :func:`configure`.

How a background body runs on one is declared, not guessed at each use: a
:class:`Placement` says whether calls run here (a thread of this process) or
elsewhere, and how a running call stops; :func:`placement` gives it for any
executor.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from ..errors import ExecutorError
from .futures import is_dask_client

__all__ = [
    "Placement",
    "PoolPlacement",
    "check_executor",
    "configure",
    "configured_executor",
    "get_executor",
    "placement",
    "runs_here",
    "shutdown",
]

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


# -- how work runs on an executor -----------------------------------------------------


@runtime_checkable
class Placement(Protocol):
    """How background work runs on an executor, declared by the executor itself (a
    :class:`~nbcache.tasks.dask.DaskExecutor` is one) or by :func:`placement`.

    ``here``: calls run on a thread of this process and share its memory, so a
    cell body runs on it directly, in a copy of the namespace, and checkpoints from
    this process. Otherwise they run in another process: inputs are pickled there,
    bound variables come back, and the worker writes the checkpoints itself.

    ``ships_modules``: modules a call imports or receives travel in this process's
    version (notebook-local ones by value); otherwise a module argument travels by
    its name and the worker imports its own.
    """

    here: bool
    ships_modules: bool

    def start(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        modules: Sequence[types.ModuleType] = (),
        on_progress: Callable[[int, int | None], None] | None = None,
        on_resumed: Callable[[str], None] | None = None,
    ) -> Future[Any]:
        """Run ``fn(*args, **kwargs)``. ``name``, ``modules`` and the callbacks are used
        where the executor can (a placement that cannot report progress ignores them)."""
        ...

    def stop(self, future: Future[Any]) -> bool:
        """Stop the call behind ``future``: True if nothing of it runs any more, False if
        it goes on until it ends (its outcome is then dropped by the caller)."""
        ...


class PoolPlacement:
    """A plain ``concurrent.futures.Executor``: a call stops only before it starts,
    unless the pool can stop its workers (``kills_workers``: loky's can)."""

    ships_modules = False

    def __init__(self, executor: Executor, *, here: bool, kills_workers: bool = False) -> None:
        self.executor = executor
        self.here = here
        self.kills_workers = kills_workers

    def __repr__(self) -> str:
        return f"<PoolPlacement {self.executor!r} here={self.here}>"

    def start(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        modules: Sequence[types.ModuleType] = (),
        on_progress: Callable[[int, int | None], None] | None = None,
        on_resumed: Callable[[str], None] | None = None,
    ) -> Future[Any]:
        return self.executor.submit(fn, *args, **(kwargs or {}))

    def stop(self, future: Future[Any]) -> bool:
        if future.cancel():
            return True
        if self.kills_workers:
            self.executor.shutdown(wait=False, kill_workers=True)  # type: ignore[call-arg]
            return True
        return False  # it cannot be stopped: it runs to its end


def runs_here(kind: Executor | str | Any = None) -> bool:
    """Whether work on ``kind`` (default: the configured executor) runs on a thread of
    this process; answered without connecting to or starting anything."""
    chosen = _configured if kind is None else kind
    if isinstance(chosen, str):
        return chosen == "thread"
    declared = getattr(chosen, "here", None)
    return declared if isinstance(declared, bool) else isinstance(chosen, ThreadPoolExecutor)


def placement(kind: Executor | str | Any = None) -> Placement:
    """How work runs on ``kind`` (default: the configured executor), which
    :func:`get_executor` makes or connects to first.

    Raises:
        ExecutorError: as :func:`get_executor`.
    """
    executor = get_executor(kind)
    if isinstance(executor, Placement):  # it declares how it runs work
        return executor
    return PoolPlacement(executor, here=runs_here(executor), kills_workers=_is_loky(executor))


def _is_loky(executor: Executor) -> bool:
    """A loky pool (``"process"``, or one the user made): it can stop its workers."""
    loky = sys.modules.get("joblib.externals.loky.process_executor")
    return loky is not None and isinstance(executor, loky.ProcessPoolExecutor)
