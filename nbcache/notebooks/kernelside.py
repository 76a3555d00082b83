"""What a kernel that ``nbcache run`` or papermill's engine starts does as it starts, once
nbcache is loaded: send nbcache's own warnings to the driver's cell log
(``NBCACHE_AUTO_LOG``) instead of into the cells' output.

The executed notebook then shows what ``jupyter execute`` shows; the driver says
each warning on its own stderr (or papermill's log), naming the cell. In a kernel no
driver reads (the ``nbcache`` kernelspec in JupyterLab, say) the warnings stay where
the user reads them: under the cell.

After each cell it also logs what the driver must check again before it writes an
unchanged notebook with no kernel (:mod:`nbcache.notebooks.unchanged`): ``sys.path``
and the digests of the local modules imported since the last cell, and the files a
timed cell (``%time f()``) opened or removed, which no entry records.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from .. import settings
from ..cache.default import default_cache
from ..errors import CacheWarning
from ..keys.modules import is_local_module
from ..run.files import FileReads
from .unchanged import MEASURED, allowed, file_digest

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
    shell.events.register("post_run_cell", _environment_logger(path))
    before, after = _measured_files(path)
    shell.events.register("pre_run_cell", before)
    shell.events.register("post_run_cell", after)
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


def _environment_logger(path: str) -> Any:
    """A post-run hook that logs ``sys.path`` when it changed and the local modules
    imported since it last ran, each by its file's digest (cheap: only new modules)."""
    seen: set[str] = set()
    last: list[Any] = [None, -1]  # sys.path, len(sys.modules)

    def log(_result: Any = None) -> None:
        if last[0] == sys.path and last[1] == len(sys.modules):
            return
        modules = {}
        for name, module in list(sys.modules.items()):
            if name in seen:
                continue
            seen.add(name)
            file = getattr(module, "__file__", None)
            if isinstance(file, str) and name != "__main__" and is_local_module(name):
                modules[os.path.abspath(file)] = file_digest(file)
        last[:] = [list(sys.path), len(sys.modules)]
        _write(path, {"environment": {"path": [*last[0], *_user_site()], "modules": modules}})

    return log


def _user_site() -> list[str]:
    """The user's site-packages when this Python would add it but it is not there yet:
    the first ``pip install --user`` makes it, and what it installs there shadows the
    kernel's own distributions, so its appearance is a change to check."""
    import site

    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    return [user] if user and user not in sys.path else []


def _measured_files(path: str) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
    """Hooks that log the files a timed cell (``%time f()``, ``%timeit g()``) opened,
    wrote or removed: its expression runs with no entry to record them, and a notebook
    written again with no kernel must not keep what it showed of a file since changed,
    nor skip a file it wrote."""
    active: list[tuple[str | None, Any, Any]] = []

    def before(info: Any) -> None:
        after()  # a cell that never reached its post-run hook: its recording ends here
        if allowed(str(getattr(info, "raw_cell", "") or "")) not in MEASURED:
            return
        store = default_cache().store  # what nbcache writes there is not the cell's doing
        recording = FileReads.recording([store.location] if store is not None else [])
        found = recording.__enter__()
        active.append((getattr(info, "cell_id", None) or None, recording, found))

    def after(_result: Any = None) -> None:
        if not active:
            return
        cell_id, recording, found = active.pop()
        recording.__exit__(None, None, None)
        if cell_id:
            touched = sorted({*found, *found.written.states})
            _write(path, {"measured": cell_id, "touched": touched})

    return before, after


def _logged(path: str, cell_id: str | None, text: str) -> bool:
    """Append a warning to the driver's log; False when it cannot be written (the
    warning then shows under the cell, as without a driver)."""
    return _write(path, {"cell_id": cell_id, "warning": text})


def _write(path: str, data: dict[str, Any]) -> bool:
    record = json.dumps(data)
    try:
        with _lock, open(path, "a", encoding="utf-8") as f:
            f.write(record + "\n")
    except OSError:
        return False
    return True
