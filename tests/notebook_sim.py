"""Define functions the way a notebook cell does: source in linecache, module ``__main__``."""

from __future__ import annotations

import itertools
import linecache
import subprocess
import sys
import textwrap
from typing import Any

_cells = itertools.count()


def run_cell(source: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute ``source`` as IPython executes a cell, so inspect.getsource finds it."""
    source = textwrap.dedent(source)
    filename = f"<ipython-input-{next(_cells)}-sim>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace.setdefault("__name__", "__main__")
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def outputs_under_hash_seeds(code: str, seeds: tuple[str, ...] = ("0", "1", "2")) -> set[str]:
    """What ``code`` prints in fresh interpreters, one per PYTHONHASHSEED."""
    return {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in seeds
    }
