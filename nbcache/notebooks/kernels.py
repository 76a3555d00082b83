"""Notebooks run headless in a fresh kernel of this interpreter: the kernel manager, the
connection options, one call that runs a notebook, the status lines it showed, and the
language a kernelspec names.

Running notebooks needs the ``notebook`` extra (nbclient, nbformat, ipykernel);
this module imports them only when a notebook runs.  The kernel is always this
interpreter's own ipykernel (the ``python3`` kernel), whatever other kernelspecs
are installed, so it sees this installation of nbcache.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CELL_TIMEOUT",
    "INSTALL_HINT",
    "NotebookUnavailable",
    "execute_notebook",
    "is_python",
    "is_status",
    "kernel_language",
    "kernel_manager_class",
    "launch_options",
    "require",
    "status_lines",
]

INSTALL_HINT = 'pip install "nbcache[notebook]"'
CELL_TIMEOUT = 600  # seconds a single cell may take before the run is stopped


class NotebookUnavailable(ImportError):
    """nbclient, nbformat or ipykernel is missing: notebooks cannot run headless here."""


def require() -> None:
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
    require()
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


def is_python(language: str) -> bool:
    return language.strip().lower().startswith(("python", "ipython"))


def kernel_language(name: str) -> str | None:
    """The language of the kernel ``name``; None when there is no such kernel (starting it
    says so) or it names none."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        language = KernelSpecManager().get_kernel_spec(name).language
    except NoSuchKernel:
        return None
    return str(language) if language else None
