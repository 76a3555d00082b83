"""``python -m nbcache tutorial [PATH]``: run a notebook twice headless, each in a fresh kernel.

The first run computes every ``%%cache`` cell and stores it; the second run,
in a new kernel just as after a restart, restores them.  For each run this
prints how long the whole run took and the status line of each cached cell.

Running notebooks needs the ``notebook`` extra (nbclient, nbformat,
ipykernel); this module imports them only when a notebook runs.  The kernel
is always this interpreter's own ipykernel (the ``python3`` kernel), whatever
other kernelspecs are installed, so it sees this installation of nbcache.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..settings import store_location
from ..units import format_duration

__all__ = [
    "DEFAULT_NOTEBOOK",
    "INSTALL_HINT",
    "NotebookUnavailable",
    "execute_notebook",
    "kernel_manager_class",
    "launch_options",
    "run_tutorial",
    "status_lines",
]

DEFAULT_NOTEBOOK = os.path.join("notebooks", "quickstart.ipynb")
INSTALL_HINT = 'pip install "nbcache[notebook]"'
CELL_TIMEOUT = 600  # seconds a single cell may take before the run is stopped
RUNS = ("run 1 (fresh kernel)", "run 2 (restarted kernel)")


class NotebookUnavailable(ImportError):
    """nbclient, nbformat or ipykernel is missing: notebooks cannot run headless here."""


def _require() -> None:
    """Import what running a notebook needs, or say what to install.

    Raises:
        NotebookUnavailable: one of the packages is not installed.
    """
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        missing = exc.name or "nbclient"
        raise NotebookUnavailable(
            f"running notebooks headless needs nbclient, nbformat and ipykernel, and "
            f"`{missing}` is not installed: {INSTALL_HINT}"
        ) from exc


@functools.cache
def kernel_manager_class() -> type[Any]:
    """An AsyncKernelManager whose ``python3`` kernel is always this interpreter.

    A ``python3`` kernelspec in the user's or the system's Jupyter folders
    would otherwise win over this environment's one and could start another
    Python, without nbcache.  With no kernel folders to search, jupyter_client
    falls back to ipykernel's built-in spec, whose command is
    ``sys.executable -m ipykernel_launcher``.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[])

        @default("shutdown_wait_time")
        def _shutdown_wait_time_default(self) -> float:
            # A kernel that has finished its cells exits within ~0.1 s of the shutdown
            # request; about one shutdown in ten, ipykernel 7 ignores the request and
            # waits for SIGTERM, which by default comes only after 2.5 s.
            return 1.0

    return ThisPythonKernelManager


def launch_options(manager: type[Any]) -> dict[str, Any]:
    """Encrypt the kernel's connection when this jupyter_client and pyzmq can; the kernel
    then also stops warning about plain-text TCP on the terminal."""
    import zmq

    if "transport_encryption" in manager.class_trait_names() and zmq.has("curve"):
        return {"transport_encryption": "auto"}
    return {}


def execute_notebook(
    nb: Any,
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: int = CELL_TIMEOUT,
    allow_errors: bool = False,
) -> Any:
    """Run ``nb`` (an nbformat notebook, changed in place and returned) in a fresh
    ``python3`` kernel of this interpreter, started in ``cwd`` with ``env`` as its
    whole environment (default: this process's).

    Raises:
        NotebookUnavailable: nbclient, nbformat or ipykernel is missing.
        nbclient.exceptions.CellExecutionError: a cell raised and ``allow_errors`` is False.
        nbclient.exceptions.CellTimeoutError: a cell ran longer than ``timeout`` seconds.
        nbclient.exceptions.DeadKernelError: the kernel died.
    """
    _require()
    from nbclient import NotebookClient

    manager = kernel_manager_class()
    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=manager,
        timeout=timeout,
        allow_errors=allow_errors,
        resources={"metadata": {"path": os.fspath(cwd)}},
    )
    client.execute(env=dict(os.environ if env is None else env), **launch_options(manager))
    return nb


def is_status(output: Mapping[str, Any]) -> bool:
    """Whether a cell output is an nbcache status line."""
    meta = output.get("metadata") or {}
    return output.get("output_type") == "display_data" and "nbcache" in meta


def status_lines(nb: Any) -> list[tuple[Any, str]]:
    """``(execution count, status line)`` of every nbcache status line in ``nb``."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if is_status(output):
                found.append((cell.get("execution_count"), output["data"]["text/plain"]))
    return found


def _store_for_kernels() -> str:
    """The store the command's user means: NBCACHE_DIR, or .nbcache here, made absolute
    because the kernel starts in the notebook's folder."""
    location = store_location()
    return location if "://" in location else os.path.abspath(location)


def _failure(run: str, exc: BaseException) -> str:
    """One readable line for a run that stopped."""
    from nbclient.exceptions import CellExecutionError

    if isinstance(exc, CellExecutionError):
        where = f"{exc.ename}: {exc.evalue}" if exc.ename else str(exc).strip().splitlines()[-1]
        return f"nbcache: {run} stopped: a cell raised {where}"
    return f"nbcache: {run} stopped: {type(exc).__name__}: {exc}"


def run_tutorial(
    path: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    runs: Sequence[str] = RUNS,
) -> int:
    """Run the notebook at ``path`` once per entry of ``runs``, each in a fresh kernel, on
    the default store; print each run's time and cached cells' status lines.

    ``out`` saves the notebook as the last run left it.  Returns the exit code: 0, 1 when
    a run stopped, 2 when the notebook or the packages to run it are missing.
    """
    notebook = Path(path if path is not None else DEFAULT_NOTEBOOK)
    if not notebook.is_file():
        print(
            f"nbcache: no notebook at {notebook}: run this from the folder that holds "
            f"{DEFAULT_NOTEBOOK}, or give the notebook's path",
            file=sys.stderr,
        )
        return 2
    try:
        _require()
    except NotebookUnavailable as exc:
        print(f"nbcache: {exc}", file=sys.stderr)
        return 2
    import nbformat
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    store = _store_for_kernels()
    env = {**os.environ, "NBCACHE_DIR": store}
    print(f"nbcache tutorial: {notebook}, store {store}")
    executed: Any = None
    computed: list[int] = []
    for run in runs:
        nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        try:
            executed = execute_notebook(nb, cwd=notebook.resolve().parent, env=env)
        except (CellControlSignal, DeadKernelError, RuntimeError) as exc:
            print(_failure(run, exc), file=sys.stderr)
            return 1
        lines = status_lines(executed)
        print(f"{run}: {format_duration(time.perf_counter() - start)}")
        for count, line in lines:
            print(f"  In [{count}]: {line}")
        if not lines:
            print("  (no %%cache cell showed a status line)")
        computed.append(sum(line.startswith("nbcache: computed") for _, line in lines))
    if len(computed) > 1 and computed[0] == 0:
        print(
            "run 1 restored too: this store already held the notebook's results; point "
            "NBCACHE_DIR at an empty folder to watch a cold run"
        )
    if out is not None and executed is not None:
        nbformat.write(executed, os.fspath(out))  # type: ignore[no-untyped-call]
        print(f"saved the executed notebook to {out}")
    return 0
