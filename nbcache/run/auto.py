"""Auto mode: every code cell cached as if it began with ``%%cache``.

Which cells (:func:`wraps`): every cell with code, except one that begins with
another cell magic (``%%time``, ``%%bash``, ``%%nocache``, ``%%cache`` itself)
or awaits at its top level (IPython runs those in its event loop). A cell that
cannot be cached (a line magic, a shell escape) is wrapped too and runs as
without nbcache, saying nothing, as ``%%cache`` does with it.

What is stored (:meth:`AutoMode.admit`): in a whole-notebook run (``nbcache run``,
papermill's engine: ``NBCACHE_AUTO=lazy``) every cell whose values can be stored, so
that run 2 of an unchanged notebook executes only the cells that always run,
whatever the machine's load. Interactively, a cell whose run costs less than
restoring it would is kept in memory only; its variables' digests still feed the
keys of the cells after it, because later keys hash the values, not the cells
that made them. Measured on the local store of this machine class (a 2-vCPU VM,
local disk; see docs/decisions.md): writing an entry costs 2.4 ms plus ~0.7 ns a
byte, once; reading it back 0.13 ms plus ~1.3 ns a byte, on every later run
(a whole-notebook run reads only the header of most). A hit from the header
costs a cell 0.8 ms where a trivial cell without nbcache costs 0.48 ms (IPython's
own work), and a cell that runs again in a later run must also load what it
reads; the write is paid once. So a cell is stored when its body took longer
than 0.5 ms plus 2 ns per pickled byte: an assignment of a constant (0.15 ms,
compiling included) is not, a `df.head()` is, a cheap copy of a big array is not.
Cells that drew random numbers, bound notebook code or a module are
always stored.
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .. import settings
from .cellrun import ModuleRef
from .records import CellEntry

__all__ = ["AUTO_MAGIC", "AutoMode", "auto_call", "fixed_cost", "from_environment", "wraps"]

AUTO_MAGIC = "%%cache --auto"
_FIXED_SECONDS = 0.0005
_SECONDS_PER_BYTE = 2e-9
_AWAIT = re.compile(r"\bawait\b|\basync\s+(for|with)\b")
# json.dumps(outcome, default=str) without a new encoder per cell
_ENCODER = json.JSONEncoder(default=str)


def append_line(path: str, text: str) -> None:
    """Append ``text`` and a newline to the log at ``path`` in one write: no buffered
    text file is made for a line a restored cell logs (JSON's text is ASCII)."""
    line = (text + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        while line:
            line = line[os.write(fd, line) :]
    finally:
        os.close(fd)


def auto_call(body: str) -> str:
    """:data:`AUTO_MAGIC` over ``body`` as IPython's cell-magic transform spells it in
    Python, without its line end (a version that spells it otherwise is not matched)."""
    return f"get_ipython().run_cell_magic('cache', '--auto', {body!r})"


def fixed_cost(nbytes: int) -> float:
    """What storing an entry of ``nbytes`` and restoring it once costs, in seconds."""
    return _FIXED_SECONDS + nbytes * _SECONDS_PER_BYTE


@dataclass
class AutoMode:
    """Auto mode in one kernel: on, how it restores, and what it noted of each cell."""

    # Restore hits by their recorded digests and load values only when a running cell
    # needs them (nbcache.run.lazy); whole-notebook runs turn it on.
    lazy: bool = False
    # Store every cell that ran at least this long; None: the cost-aware rule.
    min_seconds: float | None = None
    # A whole-notebook run: every cell whose values can be stored is stored, neither
    # rule applies (a cheap cell run again must load what it reads, and then crosses
    # the line: "11 ran", then "3 ran", on a notebook nobody touched).
    whole: bool = False
    # A JSON-lines file each cell's outcome is appended to (``nbcache run`` reads it).
    log_path: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    # the cells auto mode ran, in order, as typed: what `%nbcache plan` plans
    cells: list[tuple[str | None, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, entry: Any, nbytes: int, seconds: float) -> bool:
        """Whether a cell's entry of ``nbytes`` pickled bytes, computed in ``seconds``, is
        stored. One that binds notebook code or a module always is: a function's digest depends on
        what it reads when a later cell hashes it, so neither a plan nor a later run can
        stand in for it by the digest it had when it was defined."""
        if self.whole:
            return True
        found = CellEntry.read(entry)
        if found is not None:
            if found.effects:
                # it drew from the random generators (or changed other outside state): a
                # run again makes other values, and later keys hash these ones
                return True
            plain = set(found.plain)
            for name, value in found.vars.items():
                # modules too: inside a fingerprint a module counts by its own digest
                if name not in plain or isinstance(value, ModuleRef):
                    return True
        if self.min_seconds is not None:
            return seconds >= self.min_seconds
        return seconds >= fixed_cost(nbytes)

    def note(self, outcome: dict[str, Any]) -> None:
        """Keep what one cell did; append it to the log file when there is one."""
        with self._lock:
            self.outcomes.append(outcome)
            if self.log_path:
                try:
                    append_line(self.log_path, _ENCODER.encode(outcome))
                except OSError:
                    self.log_path = None  # the driver went away; the kernel goes on


def wraps(text: str) -> bool:
    """Whether auto mode runs the raw cell ``text`` through ``%%cache``."""
    stripped = text.lstrip()
    if not stripped or stripped.startswith("%%"):
        return False
    return not (_AWAIT.search(text) and _awaits_at_top(text))


def _awaits_at_top(text: str) -> bool:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        # IPython may still run it (top-level await does not parse without its flag, and
        # magics do not parse at all): leave such a cell to IPython.
        return True
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return False


def from_environment() -> AutoMode | None:
    """Auto mode as ``NBCACHE_AUTO`` and its companions set it (see nbcache.settings)."""
    mode = settings.auto_mode()
    if mode is None:
        return None
    whole = mode == "lazy"  # what the drivers of whole notebooks set
    return AutoMode(
        lazy=whole,
        min_seconds=settings.auto_min_seconds(),
        log_path=settings.auto_log(),
        whole=whole,
    )
