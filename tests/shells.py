"""A fresh InteractiveShell with nbcache loaded, one per test, and closed after it; and
the session a shell is given to pass for a kernel's (the restored-cells benchmark's
shells use it too)."""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

__all__ = ["KernelSession", "close_shell", "new_shell"]


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


class KernelSession:
    """What ``nbcache run``'s batch asks of a kernel's session, for a shell given it as
    ``shell.kernel = SimpleNamespace(session=KernelSession())``: a shell outside a kernel
    prints its outputs instead of sending them, so nothing comes here."""

    def send(self, *args: Any, **kwargs: Any) -> None:
        return None

    def pack(self, body: Any) -> bytes:
        return json.dumps(body).encode()

    def msg(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}
