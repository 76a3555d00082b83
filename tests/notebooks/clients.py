"""What the tests of nbcache's real clients share (papermill, Sphinx with MyST-NB,
pre-commit, the kernelspec): a folder of their own, a notebook whose cells say when
their bodies run, and the kernel's record of what each cell did."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from .nbrun import kernel_env

__all__ = ["BIN", "client_env", "executed", "outcomes", "shown", "write_notebook"]

BIN = Path(sys.executable).parent  # this venv's scripts: papermill, nbcache, pre-commit


def client_env(root: Path) -> dict[str, str]:
    """The environment a client tool runs in, and its kernels with it: a store, a secret
    and config folders under ``root``, every cell stored whatever it cost (so which cells
    restore does not depend on timing), and the kernel's log of each cell's outcome."""
    env = kernel_env(root, root / "store")
    env.update(
        NBCACHE_AUTO_LOG=str(root / "cells.jsonl"),
        NBCACHE_AUTO_MIN_SECONDS="0",
        # Kernelspecs from this venv and the test's own folder only, never the user's.
        JUPYTER_DATA_DIR=str(root / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(root / "jupyter-config"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def write_notebook(
    path: Path, cells: Sequence[tuple[str, str]], *, kernel: str = "python3", tags: Any = None
) -> None:
    """A notebook of code cells ``(id, source)``; ``tags`` maps an id to its tags."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A small notebook", id="title")]
    for cell_id, source in cells:
        cell = nbformat.v4.new_code_cell(source, id=cell_id)
        if tags and cell_id in tags:
            cell.metadata["tags"] = list(tags[cell_id])
        nb.cells.append(cell)
    nbformat.write(nb, path)


def outcomes(root: Path) -> list[tuple[str | None, str]]:
    """Each cell's ``(id, outcome)`` in the runs since the last call, from the kernel's
    log (the id is None when the client sent none); the log is then removed."""
    log = root / "cells.jsonl"
    found = []
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if "outcome" in record:  # not one of nbcache's warnings
                found.append((record.get("cell_id"), str(record["outcome"])))
        log.unlink()
    return found


def executed(folder: Path) -> list[str]:
    """The cells whose bodies ran since the last call (each appends its name to
    runs.log), in order; the file is then removed."""
    log = folder / "runs.log"
    names = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return names


def shown(path: Path) -> list[tuple[str, list[str]]]:
    """Each code cell's source and outputs as a reader sees them (tool metadata, such as
    papermill's timings, left out)."""
    nb = nbformat.read(path, as_version=4)
    return [
        (cell.source, [json.dumps(o, sort_keys=True) for o in cell.outputs])
        for cell in nb.cells
        if cell.cell_type == "code"
    ]
