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

import ast
import atexit
import importlib
import importlib.util
import inspect
import logging
import os
import pickle
import re
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .. import settings
from ..entry.pickling import OUT_OF_BAND_MIN, describe_unpicklable, pickle_with, probe
from ..errors import ExecutorError
from .futures import is_dask_client, settle_with
from .task import Task, TaskCancelled

__all__ = [
    "LOCAL",
    "DaskExecutor",
    "check",
    "close",
    "executor",
    "modules_imported_by",
    "notebook_modules",
    "set_cluster",
]

log = logging.getLogger("nbcache")

LOCAL = "local"  # NBCACHE_DASK=local: a LocalCluster nbcache starts and closes
_PROGRESS_EVERY = 0.1  # seconds between progress events from one task
_REFUSE_FOR = 3600.0  # seconds a worker remembers a cancelled key it never started
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
        if self._shut:
            raise ExecutorError(
                "this DaskExecutor was shut down: get a new one with "
                "nbcache.tasks.executors.get_executor('dask')"
            )
        kwargs = dict(kwargs or {})
        shipped = {module.__name__: module for module in modules}
        stream, buffers = _pack(fn, tuple(args), kwargs, shipped)
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
                _run_packed, key, self._topic, stream, buffers, key=key, pure=False
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
            answers = self.client.run(_stop_here, key, on_error="return")
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
                    self.client.run(_stop_here, key, wait=False, on_error="ignore")
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


@dataclass(frozen=True)
class _Cancelled:
    """What a worker returns for a task it stopped (raising would log an error there)."""

    key: str


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Cancelled):
        raise TaskCancelled(f"task {result.key!r} was cancelled")
    return result


# -- pickling the call ---------------------------------------------------------------

_pickling = threading.Lock()
_local: dict[tuple[str, str], bool] = {}  # (folder, file) -> notebook-local?


def notebook_modules(folder: str | None = None) -> list[types.ModuleType]:
    """The top-level modules loaded from a file under ``folder`` (default: the working
    directory) that is not inside site-packages, dist-packages or the Python installation."""
    root = os.path.realpath(folder or os.getcwd())
    found = []
    for name, module in list(sys.modules.items()):
        if "." in name or name in ("__main__", "nbcache") or module is None:
            continue
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        local = _local.get((root, file))
        if local is None:
            local = _local[(root, file)] = _is_local(file, root)
        if local:
            found.append(module)
    return found


def _is_local(file: str, root: str) -> bool:
    path = os.path.realpath(file)
    if not path.startswith(root.rstrip(os.sep) + os.sep):
        return False
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return not any(path.startswith(prefix.rstrip(os.sep) + os.sep) for prefix in prefixes)


def modules_imported_by(source: str, folder: str | None = None) -> list[types.ModuleType]:
    """The notebook-local modules (and their parent packages) that ``source`` imports.

    One not loaded yet is imported here first, as running ``source`` here would,
    so that its current version can be sent.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    root = os.path.realpath(folder or os.getcwd())
    wanted: dict[str, types.ModuleType] = {}
    for name in sorted(names):
        parts = name.split(".")
        if not _importable_here(parts[0], root):
            continue
        for depth in range(1, len(parts) + 1):
            dotted = ".".join(parts[:depth])
            module = sys.modules.get(dotted)
            if module is None and depth == 1:
                module = importlib.import_module(dotted)
            if module is not None:
                wanted[dotted] = module
    return list(wanted.values())


def _importable_here(top: str, root: str) -> bool:
    """Whether the top-level module ``top`` is (or would load as) notebook-local."""
    module = sys.modules.get(top)
    if module is not None:
        return module in notebook_modules(root)
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.has_location or not isinstance(spec.origin, str):
        return False  # not found, built in, frozen or a namespace package
    return top != "nbcache" and _is_local(spec.origin, root)


def _pack(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], modules: dict[str, types.ModuleType]
) -> tuple[bytes, list[Any]]:
    """The call pickled with notebook-local modules by value; large buffers out of band."""
    call = (fn, args, kwargs, modules)
    local = notebook_modules()
    with _pickling:
        registered = cloudpickle.list_registry_pickle_by_value()
        added = [module for module in local if module.__name__ not in registered]
        for module in added:
            cloudpickle.register_pickle_by_value(module)
        try:
            stream, views = pickle_with(cloudpickle.Pickler, call, OUT_OF_BAND_MIN)
        except Exception as exc:  # what fails is found while the modules are still registered
            raise ExecutorError(_unsendable(fn, args, kwargs, modules, exc)) from exc
        finally:
            for module in added:
                cloudpickle.unregister_pickle_by_value(module)
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return stream, [pickle.PickleBuffer(view) for view in views]
    # dask sends numpy arrays without a copy and they arrive writable: 100 MB took 0.11 s
    # as uint8 arrays and 0.45 s as PickleBuffers on a LocalCluster
    return stream, [numpy.frombuffer(view, dtype=numpy.uint8) for view in views]


def _unsendable(
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    modules: dict[str, types.ModuleType],
    exc: Exception,
) -> str:
    """Which part of a call cannot be pickled, and what to do about it."""
    parts: list[tuple[str, Any]] = [(getattr(fn, "__name__", "the function"), fn)]
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs).arguments
        parts += list(bound.items())
    except (TypeError, ValueError):
        parts += [(f"argument {i}", value) for i, value in enumerate(args)]
        parts += list(kwargs.items())
    parts += [(f"the module {name}", module) for name, module in modules.items()]
    where = next(
        (
            describe_unpicklable(value, name)
            for name, value in parts
            if probe(value, for_store=False)
        ),
        "the call",
    )
    return (
        f"cannot send {where} to the dask workers: {exc}. Make it where it is used (inside "
        "the cell or function), or run on the thread executor."
    )


# -- on a worker ----------------------------------------------------------------------

_here_lock = threading.Lock()
_here: dict[str, Task[Any]] = {}  # tasks running in this worker process, by key
_refused: dict[str, float] = {}  # keys cancelled before they started here, and when
_shipped: dict[str, tuple[int, Any]] = {}  # name -> (users, the module it replaced)
_ABSENT = object()


def _stop_here(key: str) -> bool:
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


def _run_packed(key: str, topic: str, stream: bytes, buffers: list[Any]) -> Any:
    """What a worker runs: the pickled call, as a task whose progress goes to ``topic``."""
    worker = importlib.import_module("distributed").get_worker()
    task: Task[Any] = Task(key)
    with _here_lock:
        if _refused.pop(key, None) is not None:
            return _Cancelled(key)
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
        return _Cancelled(key)
    exc = task.future.exception()
    if isinstance(exc, TaskCancelled):
        return _Cancelled(key)
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
