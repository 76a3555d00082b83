"""papermill's engine ``nbcache``: ``papermill --engine nbcache in.ipynb out.ipynb -p a 1``.

papermill finds it through the ``papermill.engine`` entry point. It runs the
notebook as papermill's own nbclient engine does (the same progress bar, output
saving, error cell and metadata), with four differences: the kernel loads
nbcache at start with ``NBCACHE_AUTO=lazy``, so every code
cell is looked up by its key and restores when it hits; each cell is sent with
its id, so the kernel names cells stably; consecutive cells that restore go in
one request, as under ``nbcache run``; and the cell papermill injects the
parameters in gets a stable id instead of a new random one each run. A
parameter sweep thus executes only the cells from a parameter's first use on.
As ``nbcache run``, it keeps the notebook's record (nbcache.notebooks.unchanged):
run again with the same parameters and nothing changed, it starts no kernel.

papermill is imported only when the engine runs, so nbcache works without it.
From Python, ``papermill.execute_notebook(..., engine_name="nbcache", store=URL)``
names the store (default: ``NBCACHE_DIR``, or ``.nbcache`` in the kernel's folder).
"""

from __future__ import annotations

import functools
import importlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import CacheError
from .batch import batching
from .cellids import with_cell_ids
from .celllog import logged_warnings, read_log
from .runner import (
    DRIVEN_KERNEL_ARGUMENTS,
    RunSummary,
    absolute_store,
    annotate,
    cell_outcomes,
    kernel_environment,
    restored_outcomes,
)
from .unchanged import Whole

__all__ = ["NbcacheEngine", "NotAPythonKernel", "name_cells"]

INJECTED_ID = "injected-parameters"


class NotAPythonKernel(CacheError):
    """The notebook's kernel is not a Python kernel, which nbcache cannot load into."""


class NbcacheEngine:
    """papermill's engine interface, delegating to an nbclient engine made on first use
    (papermill's ``Engine`` classes cannot be subclassed before papermill is imported)."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
        return _engine().execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        return _engine().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> Any:
        return _engine().nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> Any:
        return _engine().nb_language(nb, language)


@functools.cache
def _engine() -> Any:
    engines: Any = importlib.import_module("papermill.engines")  # untyped
    clientwrap: Any = importlib.import_module("papermill.clientwrap")
    utils: Any = importlib.import_module("papermill.utils")
    client_class = with_cell_ids(clientwrap.PapermillNotebookClient)

    class Engine(engines.NBClientEngine):  # type: ignore[misc]  # papermill is untyped
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            store: str | None = None,
            lazy: bool = True,
            **kwargs: Any,
        ) -> Any:
            # papermill's own NBClientEngine.execute_managed_notebook, argument for argument,
            # so every option papermill passes means what it means there.
            name = os.path.basename(str(kwargs.get("input_path") or ""))
            kwargs = utils.remove_args(["input_path"], **kwargs)
            safe_kwargs = utils.remove_args(["timeout", "startup_timeout"], **kwargs)
            extra = [str(a) for a in safe_kwargs.pop("extra_arguments", None) or []]
            final_kwargs = utils.merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=engines.logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                # nbcache run's way of loading nbcache: a notebook's own `%load_ext
                # nbcache` then stays silent, as under papermill's own engine
                extra_arguments=[*extra, *DRIVEN_KERNEL_ARGUMENTS],
            )
            _require_python(kernel_name)
            name_cells(nb_man.nb)
            # The kernel's environment is this process's (papermill runs the kernel in its
            # own folder, or --cwd, where a relative NBCACHE_DIR then points too).
            with tempfile.TemporaryDirectory(prefix="nbcache-papermill-") as scratch:
                # nbcache's warnings go to papermill's log, not into the notebook: the
                # kernel's cell log (one of the user's own, or ours) carries them here
                log = settings.auto_log() or os.path.join(scratch, "cells.jsonl")
                env = kernel_environment(store=absolute_store(store), lazy=lazy, log=log)
                # restored cells go in one request each run of them, as under nbcache run
                client = batching(client_class, env, True)(nb_man, **final_kwargs)
                run = _Run(nb_man, kernel_name, log, name, engines.logger)
                return run.execute(env, lambda: client.execute(env=env))

    return Engine


@dataclass
class _Run:
    """One notebook papermill runs with this engine: from the notebook's record when
    nothing changed, else in a kernel, after which the record is kept."""

    nb_man: Any
    kernel_name: str
    log: str  # the kernel's cell log
    name: str  # the notebook's file name, for the record's label
    logger: Any  # papermill's

    def execute(self, env: dict[str, str], execute: Callable[[], Any]) -> Any:
        nb = self.nb_man.nb
        offset = os.path.getsize(self.log) if os.path.isfile(self.log) else 0
        start = time.perf_counter()
        # the notebook's record, as nbcache run keeps it (the kernel runs in papermill's
        # current folder): unchanged, no kernel starts
        whole = Whole.of(nb, Path.cwd(), env, self.kernel_name)
        done = whole.restore(nb) if whole is not None else None
        if done is not None:
            _completed(self.nb_man, restored_outcomes(nb, done))
            return nb
        try:
            executed = execute()
        finally:
            # each cell's record, as nbcache run writes it; papermill saves the notebook
            # once more as it completes
            records = read_log(self.log, offset)
            annotate(nb, cell_outcomes(nb, records))
            said = RunSummary(warnings=logged_warnings(nb, self.log, offset))
            for line in said.warning_lines("nbcache"):
                self.logger.warning(line)
        if whole is not None:  # a cell that failed or was not reached keeps none
            whole.keep(nb, records, time.perf_counter() - start, self.name)
        return executed


def _completed(nb_man: Any, cells: list[Any]) -> None:
    """papermill's account of a notebook written from its record, as its own client leaves
    one whose cells all ran (each cell's start, end and status, the progress bar), saved
    once rather than twice a cell; and nbcache's record of each cell."""
    now = nb_man.now().isoformat()
    for cell in nb_man.nb.cells:
        done = {"start_time": now, "end_time": now, "duration": 0.0, "exception": False}
        cell.metadata.papermill.update(done, status=nb_man.COMPLETED)
    if getattr(nb_man, "pbar", None):
        nb_man.pbar.update(len(nb_man.nb.cells))
    annotate(nb_man.nb, cells)
    nb_man.save()


def name_cells(nb: Any) -> None:
    """Give every cell an id: the one papermill injected a stable one (papermill makes a
    random one each run, which would name the cell anew in ``why`` and the plan), and a
    cell of a notebook older than nbformat 4.5 its place."""
    used = {str(c.get("id")) for c in nb.cells if c.get("id")}
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if isinstance(tags, list) and INJECTED_ID in tags and INJECTED_ID not in used:
            used.discard(str(cell.get("id")))
            cell["id"] = INJECTED_ID
            used.add(INJECTED_ID)
        elif not cell.get("id"):
            cell["id"] = f"cell-{index}"


def _require_python(kernel_name: str) -> None:
    """nbcache's start-up argument means nothing to another language's kernel (and may
    stop it starting): say so at once rather than fail obscurely."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        language = KernelSpecManager().get_kernel_spec(kernel_name).language
    except NoSuchKernel:
        return  # papermill says so in its own words
    if language and str(language).lower() != "python":
        raise NotAPythonKernel(
            f"the kernel {kernel_name!r} runs {language}; nbcache caches Python kernels only "
            "(run this notebook with papermill's default engine)"
        )
