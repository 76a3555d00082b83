"""What a kernel that ``nbcache run`` or papermill's engine starts does as it starts, once
nbcache is loaded: send nbcache's own warnings to the driver's cell log
(``NBCACHE_AUTO_LOG``) instead of into the cells' output.

The executed notebook then shows what ``jupyter execute`` shows; the driver says
each warning on its own stderr (or papermill's log), naming the cell. In a kernel no
driver reads (the ``nbcache`` kernelspec in JupyterLab, say) the warnings stay where
the user reads them: under the cell.
"""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

from .. import settings
from ..errors import CacheWarning

__all__ = ["load"]

_lock = threading.Lock()


def load(shell: Any) -> None:
    """Divert nbcache's warnings in ``shell`` to the driver's log, if any (the kernel's
    start-up line loads nbcache first: see ``DRIVEN_KERNEL_ARGUMENTS`` in
    :mod:`nbcache.notebooks.runner`)."""
    path = settings.auto_log()
    if not path:
        return
    cell: list[str | None] = [None]

    def remember(info: Any) -> None:
        cell[0] = getattr(info, "cell_id", None) or None

    shell.events.register("pre_run_cell", remember)
    shown = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, CacheWarning) or not _logged(path, cell[0], str(message)):
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _logged(path: str, cell_id: str | None, text: str) -> bool:
    """Append a warning to the driver's log; False when it cannot be written (the
    warning then shows under the cell, as without a driver)."""
    record = json.dumps({"cell_id": cell_id, "warning": text})
    try:
        with _lock, open(path, "a", encoding="utf-8") as f:
            f.write(record + "\n")
    except OSError:
        return False
    return True
