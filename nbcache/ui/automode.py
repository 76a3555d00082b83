"""Turning auto mode on and off in an IPython shell: the input transformer that puts
``%%cache --auto`` in front of every cell auto mode caches (see nbcache.run.auto)."""

from __future__ import annotations

from typing import Any

from ..run.auto import AUTO_MAGIC, AutoMode, wraps
from ..run.cell import CellCache

__all__ = ["auto_off", "auto_on"]

_ON: dict[int, Any] = {}  # shell -> its transformer


def auto_on(shell: Any, cells: CellCache, auto: AutoMode) -> None:
    """Cache every cell of ``shell`` from its next cell on."""
    cells.auto = auto
    if id(shell) in _ON:
        return

    def wrap(lines: list[str]) -> list[str]:
        # Runs after IPython's own clean-up (prompts, indentation), before it looks for
        # a cell magic, so the cell reaches %%cache as typed.
        if cells.auto is None or not wraps("".join(lines)):
            return lines
        return [AUTO_MAGIC + "\n", *lines]

    wrap.nbcache_auto = True  # type: ignore[attr-defined]  # see IPythonShell.transform
    shell.input_transformers_cleanup.append(wrap)
    _ON[id(shell)] = wrap


def auto_off(shell: Any, cells: CellCache) -> None:
    """Back to caching only ``%%cache`` cells."""
    cells.auto = None
    wrap = _ON.pop(id(shell), None)
    if wrap is not None and wrap in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(wrap)
