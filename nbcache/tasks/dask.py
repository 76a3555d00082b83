"""Background work on a dask cluster: where the cluster comes from, what goes to a worker,
how a running task is stopped and how its progress comes back.

Imported only when dask is asked for, and ``distributed`` only inside the
functions that talk to a cluster, so ``import nbcache`` never loads either.

**The cluster**, first found wins: the ``distributed.Client`` or scheduler
address given to :func:`nbcache.configure` (``executor=client`` or
``dask=...``), then ``NBCACHE_DASK``: a scheduler address
(``tcp://host:port``) or ``local``, a ``LocalCluster`` of two worker
processes on 127.0.0.1 that nbcache starts once per process, when first
needed, and closes at exit.  With none of them, asking for dask is an
:class:`~nbcache.errors.ExecutorError` that says how to set one.

**What goes to a worker.**  nbcache pickles the call itself (cloudpickle,
large buffers out of band) and hands dask only bytes, so a value the workers
cannot unpickle fails that one task with a message instead of killing the
worker's connection, which makes dask lose its workers and hang.  The workers
need nbcache installed (checked once per client).  *Notebook-local modules*
travel by value: top-level modules loaded from a file under the working
directory that is not inside ``site-packages``, ``dist-packages`` or the
Python installation (a ``helpers.py`` beside the notebook, a package folder
beside it).  Objects from them are pickled by value
(``cloudpickle.register_pickle_by_value``, only while nbcache pickles), and
those a cell's body imports are importable on the worker while it runs, in
the kernel's version.  Anything else must be importable on the workers.

**Tasks** are submitted under unique keys with ``pure=False``, so two runs of
the same impure work both run.  Every dask future is referenced until it
finishes (a dropped one is released and never runs).

**Cancelling** cannot interrupt a worker thread.  :meth:`DaskExecutor.stop`
asks every worker: one that runs the task makes it raise
:class:`~nbcache.tasks.task.TaskCancelled` at its next ``nbcache.progress`` (or
tqdm) step, and the future ends when the worker lets go; a task no worker has
started is refused by all of them and cancelled at once.

**Progress** steps on a worker are sent back as dask events on a topic of the
client (at most ten a second, and the last), and handed to the task's card; so is
the line that says where the body resumed (``Task.resumed``), once.

**A worker that dies** mid-task is dask's to handle: it runs the task again on
another worker, where a body that checkpoints resumes (nbcache.run.checkpoint).
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import logging
import re
import sys
import threading
import types
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from .. import settings
from ..errors import ExecutorError
from .daskpack import pack
from .daskworker import Cancelled, run_packed, stop_here
from .futures import is_dask_client, settle_with
from .task import TaskCancelled

__all__ = [
    "LOCAL",
    "DaskExecutor",
    "check",
    "close",
    "executor",
    "set_cluster",
]

log = logging.getLogger("nbcache")

LOCAL = "local"  # NBCACHE_DASK=local: a LocalCluster nbcache starts and closes
_NO_CLUSTER = (
    "no dask cluster to run on: set NBCACHE_DASK=tcp://host:port (a scheduler) or "
    "NBCACHE_DASK=local (a local cluster nbcache starts), or call "
    "nbcache.configure(executor=client) with a distributed.Client"
)
_NOT_INSTALLED = (
    'running on dask needs the distributed package: pip install "nbcache[dask]" '
    "(and nbcache on every worker)"
)


# -- which cluster -------------------------------------------------------------------

_state = threading.RLock()
_cluster: Any = None  # what configure(dask=...) gave: a Client, an address, or None
_opened: dict[str, Any] = {}  # clients nbcache opened, by address (or LOCAL)
_local_cluster: Any = None
_executors: dict[str, DaskExecutor] = {}  # by client id
_closing_registered = False


def set_cluster(cluster: Any) -> None:
    """Use ``cluster`` (a ``distributed.Client`` or a scheduler address) for dask; None goes
    back to ``NBCACHE_DASK``. See :func:`nbcache.configure`.

    Raises:
        ExecutorError: ``cluster`` is neither a client nor an address.
    """
    global _cluster
    if cluster is not None and not is_dask_client(cluster):
        if not isinstance(cluster, str) or not cluster.strip():
            raise ExecutorError(
                f"dask= takes a distributed.Client or a scheduler address such as "
                f"'tcp://127.0.0.1:8786' or 'local', not {cluster!r}"
            )
        cluster = cluster.strip()
    with _state:
        _cluster = cluster


def _chosen() -> Any:
    """The configured client or address, else NBCACHE_DASK, else None."""
    return _cluster if _cluster is not None else settings.dask_address()


def check(client: Any = None) -> None:
    """Fail now, with one line that says what to do, if dask cannot be used: distributed
    missing, no cluster configured, or the client given is closed. Never waits.

    Raises:
        ExecutorError: with that line.
    """
    if importlib.util.find_spec("distributed") is None:
        raise ExecutorError(_NOT_INSTALLED)
    chosen = client if client is not None else _chosen()
    if chosen is None:
        raise ExecutorError(_NO_CLUSTER)
    if is_dask_client(chosen) and chosen.status in ("closing", "closed"):
        raise ExecutorError(
            "the dask client given to nbcache.configure is closed: pass an open one, "
            "or call nbcache.configure() to go back to NBCACHE_DASK"
        )


def executor(client: Any = None) -> DaskExecutor:
    """The executor on ``client`` (default: the configured cluster, connected or started now).

    Raises:
        ExecutorError: see :func:`check`; or the scheduler cannot be reached, the
            local cluster cannot start, or the workers cannot import nbcache.
    """
    check(client)
    with _state:
        chosen = client if client is not None else _chosen()
        if not is_dask_client(chosen):
            chosen = _connect(str(chosen))
        for gone in [k for k, e in _executors.items() if e._shut or e.client.status != "running"]:
            del _executors[gone]
        found = _executors.get(chosen.id)
        if found is None or found.client is not chosen:
            found = _executors[chosen.id] = DaskExecutor(chosen)
        return found


def _connect(address: str) -> Any:
    """The client nbcache keeps for ``address`` (or LOCAL), opened on first use."""
    global _local_cluster, _closing_registered
    client = _opened.get(address)
    if client is not None and client.status == "running":
        return client
    distributed: Any = importlib.import_module("distributed")  # untyped: keep it Any
    if not _closing_registered:
        atexit.register(close)
        _closing_registered = True
    try:
        if address == LOCAL:
            if _local_cluster is None:
                _spawnable_main()
                _local_cluster = distributed.LocalCluster(
                    n_workers=2,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                )
            client = distributed.Client(_local_cluster, set_as_default=False)
        else:
            client = distributed.Client(address, set_as_default=False)
    except Exception as exc:
        if address == LOCAL:
            raise ExecutorError(
                f"cannot start the local dask cluster (NBCACHE_DASK=local): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        raise ExecutorError(
            f"cannot reach the dask scheduler at {address}: {type(exc).__name__}: {exc}. "
            "Check NBCACHE_DASK (or nbcache.configure(dask=...)) and that the scheduler runs."
        ) from exc
    _opened[address] = client
    return client


def _spawnable_main() -> None:
    """Worker processes start by spawn, which reads ``__main__.__spec__``; IPython's
    ``%reset`` clears the notebook's module, and with it that attribute."""
    main = sys.modules.get("__main__")
    if main is not None and not hasattr(main, "__spec__"):
        main.__spec__ = None


def close() -> None:
    """Close the clients nbcache opened and the local cluster it started (at exit too).

    Clients handed to :func:`nbcache.configure` belong to their owner and stay open.
    """
    global _local_cluster
    with _state:
        opened = list(_opened.values())
        _opened.clear()
        cluster, _local_cluster = _local_cluster, None
        for key, found in list(_executors.items()):
            if found.client in opened:
                del _executors[key]
    for client in opened:
        try:
            client.close(timeout=10)
        except Exception:
            log.warning("nbcache: closing a dask client failed", exc_info=True)
    if cluster is not None:
        try:
            cluster.close(timeout=10)
        except Exception:
            log.warning("nbcache: closing the local dask cluster failed", exc_info=True)


# -- the executor -----------------------------------------------------------------------


class DaskExecutor(Executor):
    """A ``concurrent.futures.Executor`` on a ``distributed.Client``, for nbcache's work.

    Its futures are ``concurrent.futures.Future`` objects; ``running()`` turns
    true once a worker starts the call.  :meth:`start` adds what task cards use:
    a name for the dashboard, modules to make importable, progress reports.
    """

    here, ships_modules = False, True  # a Placement: worker processes, local modules by value

    def __init__(self, client: Any) -> None:
        self.client = client
        self._topic = f"nbcache-{client.id}"
        self._lock = threading.Lock()
        # by key until it ends: its future, and the dask future (a dropped one never runs)
        self._running: dict[str, tuple[Future[Any], Any]] = {}
        self._progress: dict[str, Callable[[int, int | None], None]] = {}
        self._resumed: dict[str, Callable[[str], None]] = {}
        self._shut = False
        _check_workers(client)
        client.subscribe_topic(self._topic, self._on_event)

    def __repr__(self) -> str:
        return f"<DaskExecutor on {self.client.scheduler.address}>"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a worker; see :meth:`start`."""
        return self.start(fn, args, kwargs)

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
        """Run ``fn(*args, **kwargs)`` on a worker, as a task that reports progress and stops
        at a progress step once :meth:`stop` is called.

        Args:
            name: what the dashboard calls the task (default: ``fn``'s name).
            modules: modules the call imports by name, importable on the worker
                while it runs (in this process's version).
            on_progress: called with (done, total) as the worker reports steps,
                on the client's event loop: keep it short.
            on_resumed: called once, the same way, with the worker task's
                ``resumed`` line when the call resumed at a checkpoint.

        Raises:
            ExecutorError: the call or its arguments cannot be pickled, or the
                executor was shut down.
        """
        self._check_open()
        kwargs = dict(kwargs or {})
        shipped = {module.__name__: module for module in modules}
        stream, buffers = pack(fn, tuple(args), kwargs, shipped)
        key = _new_key(name or str(getattr(fn, "__name__", "call")))
        future: Future[Any] = Future()
        future.key = key  # type: ignore[attr-defined]
        with self._lock:  # before the worker can report that it started, or its steps
            self._running[key] = (future, None)
            if on_progress is not None:
                self._progress[key] = on_progress
            if on_resumed is not None:
                self._resumed[key] = on_resumed
        try:
            remote = self.client.submit(
                run_packed, key, self._topic, stream, buffers, key=key, pure=False
            )
        except BaseException:
            with self._lock:
                del self._running[key]
                self._progress.pop(key, None)
                self._resumed.pop(key, None)
            raise
        with self._lock:
            self._running[key] = (future, remote)
        # Only this executor holds the dask future, and lets it go once the outcome is
        # copied: the cluster then frees the result, whoever keeps ``future``.
        remote.add_done_callback(lambda done: settle_with(future, done, _unwrap))
        future.add_done_callback(lambda done: self._ended(key, done))
        return future

    def _check_open(self) -> None:
        if self._shut:
            raise ExecutorError(
                "this DaskExecutor was shut down: get a new one with "
                "nbcache.tasks.executors.get_executor('dask')"
            )

    def stop(self, future: Future[Any]) -> bool:
        """Stop the call behind ``future``, wherever it is.

        True if no worker had started it: it is cancelled now. False if a worker
        runs it: it raises TaskCancelled at its next progress step, and
        ``future`` ends when the worker lets go (a body with no progress steps
        runs to its end).
        """
        key = getattr(future, "key", None)
        if key is None or future.done():
            return future.cancel()
        try:
            answers = self.client.run(stop_here, key, on_error="return")
        except Exception:
            log.warning("nbcache: could not ask the dask workers to stop %s", key, exc_info=True)
            answers = {}
        if any(answer is True for answer in answers.values()):
            return False
        future.told = True  # type: ignore[attr-defined]  # the workers know already
        return future.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; ``cancel_futures`` stops what runs. The client stays open."""
        self._shut = True
        with self._lock:
            running = [future for future, _ in self._running.values()]
        if cancel_futures:
            for future in running:
                self.stop(future)
        if wait:
            for future in running:
                try:
                    future.exception()
                except BaseException:  # noqa: BLE001 - cancelled: nothing to wait for
                    pass

    def _ended(self, key: str, future: Future[Any]) -> None:
        with self._lock:
            _, remote = self._running.pop(key, (None, None))
            self._progress.pop(key, None)
            self._resumed.pop(key, None)
        if future.cancelled() and remote is not None:
            # drop the task; after cancel() on the future itself, also make sure a worker
            # that started it meanwhile stops too
            try:
                remote.cancel()
                if not getattr(future, "told", False):
                    self.client.run(stop_here, key, wait=False, on_error="ignore")
            except Exception:
                log.debug("nbcache: could not tell the workers to stop %s", key, exc_info=True)

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A worker's report, on the client's event loop: a task started, or made progress."""
        try:
            _, message = event
            key = message.get("key")
            if message.get("event") == "start":
                future, _ = self._running.get(key, (None, None))
                if future is not None and not future.done():
                    future.set_running_or_notify_cancel()
            elif message.get("event") == "progress":
                report = self._progress.get(key)
                if report is not None:
                    report(int(message["done"]), message.get("total"))
                resumed = message.get("resumed")
                tell = self._resumed.pop(key, None) if resumed else None
                if tell is not None:
                    tell(str(resumed))
        except Exception:
            log.debug("nbcache: a dask progress report failed", exc_info=True)


def _check_workers(client: Any) -> None:
    """Every worker can import nbcache, else its tasks would kill its connection."""
    answers = client.run(importlib.import_module, __name__, on_error="return")
    missing = {address: exc for address, exc in answers.items() if isinstance(exc, Exception)}
    if missing:
        address, exc = next(iter(missing.items()))
        raise ExecutorError(
            f"{len(missing)} dask worker(s), such as {address}, cannot import nbcache "
            f"({type(exc).__name__}: {exc}): install nbcache, the same version as here, "
            "where the workers run"
        ) from exc


def _new_key(name: str) -> str:
    """A unique dask key that reads well on the dashboard."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")[:40] or "call"
    return f"nbcache-{slug}-{uuid.uuid4().hex}"


def _unwrap(result: Any) -> Any:
    if isinstance(result, Cancelled):
        raise TaskCancelled(f"task {result.key!r} was cancelled")
    return result
