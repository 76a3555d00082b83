"""Papermill-style parameters: ``-p alpha 0.5`` becomes a cell after the one tagged
``parameters`` (or first, without one), tagged ``injected-parameters`` as papermill
tags it, so a sweep shares every cell upstream of a parameter's first use."""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping
from typing import Any

from ..errors import CacheError

__all__ = ["ParameterError", "inject", "literal", "resolve"]


def resolve(text: str) -> Any:
    """A ``-p`` value as papermill reads it: a bool, None, an int, a float, or the text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def literal(value: Any) -> str:
    """``value`` as Python source that gives it back: ``repr``, except for the floats whose
    repr is no expression (``nan``, ``inf``), written as papermill writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)


class ParameterError(CacheError):
    """A parameter that cannot be set: its name is no Python name."""


def inject(nb: Any, parameters: Mapping[str, Any]) -> bool:
    """Add the parameters cell to ``nb`` (an nbformat notebook), replacing one a
    previous injection left; whether it went after a cell tagged ``parameters`` (False:
    first, or nothing to inject).

    Raises:
        ParameterError: a name is no Python identifier (``-p "x; import os" 1`` would
            otherwise be code run in the kernel).
    """
    if not parameters:
        return False
    for name in parameters:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ParameterError(
                f"-p {name!r}: a parameter's name must be a Python variable name, "
                "such as alpha or n_trees"
            )
    import importlib

    nbformat: Any = importlib.import_module("nbformat")  # untyped: kept at arm's length
    lines = ["# Parameters"] + [f"{name} = {literal(value)}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines) + "\n")
    cell.metadata["tags"] = ["injected-parameters"]
    cells = [c for c in nb.cells if "injected-parameters" not in _tags(c)]
    where = next((i + 1 for i, c in enumerate(cells) if "parameters" in _tags(c)), 0)
    cells.insert(where, cell)
    nb.cells = cells
    return where > 0


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []
