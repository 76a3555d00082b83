"""Define functions the way a notebook cell does: source in linecache, module ``__main__``."""

from __future__ import annotations

import itertools
import linecache
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
