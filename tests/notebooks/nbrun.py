"""Notebooks built from cell sources with nbformat, run in a fresh ipykernel through nbclient.

Each run starts a new kernel of this interpreter (see
:func:`nbcache.notebooks.kernels.execute_notebook`) in a given folder, with an
environment built here from scratch for nbcache and IPython, so no kernel ever
touches the user's ~/.config, ~/.ipython or a repository's .nbcache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from nbcache.notebooks.kernels import execute_notebook, is_status

__all__ = [
    "build",
    "errors",
    "kernel_env",
    "outputs",
    "run",
    "status_lines",
    "text_of",
    "traceback_text",
]

SECRET = "nbcache-test-secret-of-32-bytes-0k"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build(cells: Sequence[str]) -> Any:
    """A notebook with one code cell per source; ids are stable (cell-0, cell-1, ...)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src, id=f"cell-{i}") for i, src in enumerate(cells)]
    return nb


def kernel_env(root: Path, store: Path) -> dict[str, str]:
    """A kernel's whole environment: this process's minus nbcache and pytest settings, plus
    a store, a secret, and config and IPython folders under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBCACHE_", "PYTEST_"))}
    env.update(
        NBCACHE_DIR=str(store),
        NBCACHE_SECRET=SECRET,
        XDG_CONFIG_HOME=str(root / "config"),
        IPYTHONDIR=str(root / "ipython"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run(
    cells: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    allow_errors: bool = False,
    timeout: int = 60,
) -> Any:
    """Run ``cells`` as a new notebook in a fresh kernel; the executed notebook."""
    return execute_notebook(
        build(cells), cwd=cwd, env=env, timeout=timeout, allow_errors=allow_errors
    )


def outputs(nb: Any, index: int, *, status: bool = True) -> list[Any]:
    """Cell ``index``'s outputs, consecutive stream outputs of one name merged (the
    kernel may split a stream anywhere); ``status=False`` leaves nbcache's status out."""
    merged: list[Any] = []
    for out in nb.cells[index].outputs:
        if not status and is_status(out):
            continue
        last = merged[-1] if merged else None
        if (
            out.output_type == "stream"
            and last is not None
            and last.output_type == "stream"
            and last.name == out.name
        ):
            merged[-1] = nbformat.from_dict({**last, "text": last.text + out.text})
        else:
            merged.append(out)
    return merged


def status_lines(nb: Any, index: int) -> list[str]:
    """The nbcache status lines cell ``index`` showed."""
    return [o.data["text/plain"] for o in nb.cells[index].outputs if is_status(o)]


def text_of(nb: Any, index: int, name: str = "stdout") -> str:
    """What cell ``index`` wrote to the stream ``name``."""
    return "".join(
        o.text for o in nb.cells[index].outputs if o.output_type == "stream" and o.name == name
    )


def errors(nb: Any) -> list[Any]:
    """Every error output in the notebook."""
    return [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]


def traceback_text(out: Any) -> str:
    """An error output's traceback as the user reads it (colours stripped)."""
    return _ANSI.sub("", "\n".join(out.traceback))
