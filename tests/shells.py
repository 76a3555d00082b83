"""A fresh InteractiveShell with nbcache loaded, one per test, and closed after it."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from IPython.core.interactiveshell import InteractiveShell

__all__ = ["close_shell", "new_shell"]


def new_shell(cwd: Path) -> InteractiveShell:
    os.chdir(cwd)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcache")
    return shell


def close_shell(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "nbcache")
    # Each shell registers an exit handler that collects garbage: dozens of them made
    # pytest linger for half a minute after its summary.
    shell.atexit_operations()
    atexit.unregister(shell.atexit_operations)
    InteractiveShell.clear_instance()
