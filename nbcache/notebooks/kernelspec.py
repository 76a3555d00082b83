"""The ``nbcache`` kernelspec: this Python's ipykernel, started with nbcache loaded in auto
mode, for every tool that runs notebooks by kernel name (Jupyter, MyST-NB, Jupyter
Book, nbconvert, nbclient, VS Code).

Its command is ipykernel's own plus the argument that loads nbcache, and its environment sets
``NBCACHE_AUTO=1``, so every code cell is cached as if it began with ``%%cache``.
Auto mode here restores values whole (not ``lazy``, as ``nbcache run`` does): a
client may read any variable at any time, and nothing tells the kernel when a
run ends.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import CacheError
from .runner import KERNEL_ARGUMENTS

__all__ = ["DISPLAY_NAME", "KERNEL_NAME", "KernelspecUnavailable", "install", "kernel_argv"]

KERNEL_NAME = "nbcache"
DISPLAY_NAME = "Python 3 (nbcache)"
ENV = {"NBCACHE_AUTO": "1"}


class KernelspecUnavailable(CacheError):
    """ipykernel or jupyter_client, which a kernelspec needs, is not installed here."""


def kernel_argv() -> list[str]:
    """The kernel's command: ipykernel's for this Python, loading nbcache at start as
    ``nbcache run``'s kernel does (not ``--ext=nbcache``, under which a notebook's own
    ``%load_ext nbcache`` prints "already loaded", an output no other kernel gives)."""
    command = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    return [*command, *KERNEL_ARGUMENTS]


def install(
    *,
    name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
    user: bool = False,
    prefix: str | None = None,
) -> str:
    """Install the kernelspec ``name`` for this user, under ``prefix``, or (with neither)
    system-wide, as ``jupyter kernelspec install`` does; the folder it went to. An
    existing kernelspec of that name is replaced."""
    try:
        ipykernel: Any = importlib.import_module("ipykernel.kernelspec")  # untyped
        kernelspec: Any = importlib.import_module("jupyter_client.kernelspec")
    except ImportError as exc:
        raise KernelspecUnavailable(
            f"{exc.name} is not installed here: pip install 'nbcache[notebook]'"
        ) from exc
    overrides = {"argv": kernel_argv(), "display_name": display_name, "env": dict(ENV)}
    with tempfile.TemporaryDirectory(prefix="nbcache-kernel-") as scratch:
        # ipykernel's writer adds its logos and the metadata this ipykernel supports
        # (the debugger, encryption); the overrides set the command and environment.
        source = ipykernel.write_kernel_spec(Path(scratch) / name, overrides=overrides)
        dest = kernelspec.KernelSpecManager().install_kernel_spec(
            str(source), kernel_name=name, user=user, prefix=prefix
        )
    return str(dest)
