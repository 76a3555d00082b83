"""Loading and unloading the IPython extension: register everything, then remove it all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .magics import NbcacheMagics

__all__ = ["load", "unload"]

_loaded: dict[int, tuple[NbcacheMagics, Callable[[Any], None]]] = {}


def load(shell: Any) -> None:
    """Register nbcache's magics and its pre_run_cell hook on ``shell`` (once)."""
    if id(shell) in _loaded:
        return
    magics = NbcacheMagics(shell)
    shell.register_magics(magics)

    def remember_cell_id(info: Any) -> None:
        # Front ends that send one (JupyterLab, Notebook 7, VS Code) name each cell
        # stably, so `%nbcache why` can tell an edited cell from another cell.
        magics.adapter.cell_id = getattr(info, "cell_id", None) or None

    shell.events.register("pre_run_cell", remember_cell_id)
    _loaded[id(shell)] = (magics, remember_cell_id)


def unload(shell: Any) -> None:
    """Remove every magic and hook :func:`load` registered on ``shell``."""
    magics, hook = _loaded.pop(id(shell), (None, None))
    if magics is None or hook is None:
        return
    shell.events.unregister("pre_run_cell", hook)
    manager = shell.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(type(magics).__name__, None)
