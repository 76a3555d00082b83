"""Loading and unloading the IPython extension: register everything, then remove it all."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ..errors import CacheWarning
from ..run import routing as background
from ..run.auto import from_environment
from ..tasks.executors import shutdown as shutdown_executors
from .automode import auto_off, auto_on
from .editor import Editor
from .magics import NbcacheMagics
from .parsing import check_off, check_on
from .terminal import close_terminal_output

__all__ = ["load", "unload"]

_loaded: dict[int, tuple[NbcacheMagics, Callable[[Any], None]]] = {}
_editors: dict[int, Editor] = {}  # the comm to JupyterLab's and Notebook 7's extension


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
    check_on(shell)  # a %%cache body that does not parse: IPython's own SyntaxError
    _loaded[id(shell)] = (magics, remember_cell_id)
    _format_warnings_as_one_line()
    auto = from_environment()  # NBCACHE_AUTO=1: every kernel that loads nbcache
    if auto is not None:
        auto_on(shell, magics.cells, auto)
    editor = Editor(shell, magics.cells)
    editor.open()
    _editors[id(shell)] = editor


def unload(shell: Any) -> None:
    """Remove every magic and hook :func:`load` registered on ``shell``."""
    magics, hook = _loaded.pop(id(shell), (None, None))
    if magics is None or hook is None:
        return
    shell.events.unregister("pre_run_cell", hook)
    editor = _editors.pop(id(shell), None)
    if editor is not None:
        editor.close()
    check_off(shell)
    close_terminal_output(shell)
    auto_off(shell, magics.cells)
    manager = shell.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(type(magics).__name__, None)
    if not _loaded:
        shutdown_executors()
        background.uninstall()
        warnings.formatwarning = _original_format
        filters: list[Any] = warnings.filters  # type: ignore[assignment]
        if _ALWAYS in filters:
            filters.remove(_ALWAYS)


_original_format = warnings.formatwarning


def _one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """A CacheWarning shows as its message alone: nbcache's file and line mean nothing
    to the user; every other warning keeps Python's format."""
    if issubclass(category, CacheWarning):
        return f"{message}\n"
    return _original_format(message, category, filename, lineno, line)


def _format_warnings_as_one_line() -> None:
    if warnings.formatwarning is not _one_line:
        warnings.formatwarning = _one_line
    # Python shows a warning once per message and place by default; a cell that
    # degrades again on its next run must say so again. Appended, so that a
    # user's own filter for CacheWarning still wins.
    if _ALWAYS not in warnings.filters:
        warnings.filterwarnings("always", category=CacheWarning, append=True)


_ALWAYS = ("always", None, CacheWarning, None, 0)
