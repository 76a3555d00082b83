"""A notebook file read for a run or a plan: every cell with an id, the parameters
injected; a file that is no notebook nbformat reads says so in one line."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CacheError, warn
from .params import inject

__all__ = ["NotANotebook", "as_read", "read_notebook"]


class NotANotebook(CacheError):
    """A file nbformat cannot read as a notebook, or one whose cells are not cells."""


def read_notebook(path: Path, parameters: Mapping[str, Any] | None = None) -> Any:
    """The notebook at ``path``, every cell with an id, the parameters injected.

    Raises:
        NotANotebook: not JSON, not UTF-8, of no nbformat version, or of another shape.
    """
    import importlib

    nbformat: Any = importlib.import_module("nbformat")  # untyped: kept at arm's length
    try:
        with warnings.catch_warnings():
            # nbformat warns of cells without ids, which this run gives them
            warnings.simplefilter("ignore")
            nb = nbformat.read(path, as_version=4)
        cells = nb.cells
    # nbformat lets a malformed file through as whatever its reader raised: a schema's
    # ValidationError, a TypeError, an AttributeError, a KeyError
    except Exception as exc:
        if isinstance(exc, OSError):
            raise  # no such file, a folder, no permission: the CLI's own line says which
        raise _refused(path, str(exc)) from exc
    if not isinstance(cells, list) or not all(_is_cell(cell) for cell in cells):
        raise _refused(path, "a cell without a type or a source of text")
    for index, cell in enumerate(cells):
        if not cell.get("id"):
            cell["id"] = f"cell-{index}"  # nbformat < 4.5 has none: name cells by place
    if parameters and not inject(nb, dict(parameters)):
        names = ", ".join(f"-p {name}" for name in parameters)
        warn(
            f"nbcache: {path.name} has no cell tagged `parameters`, so {names} is set in a "
            "cell of its own before the first cell; tag the cell that sets the defaults "
            "`parameters` to set them after it",
            stacklevel=2,
        )
    return nb


def as_read(nb: Any) -> Any:
    """``nb`` (changed in place) without the ids :func:`read_notebook` named its cells by
    when its nbformat has none (before 4.5, whose schema refuses them): written so, it
    stays the notebook a plain run writes, one Jupyter opens as valid."""
    if isinstance(nb.get("nbformat_minor"), int) and nb["nbformat_minor"] < 5:
        for cell in nb.cells:
            cell.pop("id", None)
    return nb


def _is_cell(cell: Any) -> bool:
    return (
        isinstance(cell, dict)
        and isinstance(cell.get("cell_type"), str)
        and isinstance(cell.get("source"), str)
    )


def _refused(path: Path, said: str) -> NotANotebook:
    first = next((line.strip() for line in said.splitlines() if line.strip()), "")
    return NotANotebook(
        f"{path.name} is not a notebook nbformat can read ({first[:160]}): open it in "
        "Jupyter to see what is wrong, or check it is the file you meant"
    )
