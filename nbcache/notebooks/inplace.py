"""A notebook run in place that changed nothing but its timestamps is left byte for byte
as it was, so a re-run that restores every cell leaves no diff: pre-commit then passes
on the second run, and CI can check that executed notebooks are up to date with
``git diff --exit-code``. nbclient stamps each cell's ``metadata.execution`` with
the times of this run, which would otherwise change the file every time."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["keep_if_unchanged", "read_bytes"]

# Cell metadata that says when a cell ran, not what it showed. nbcache's record of what a
# cell did counts as such too: a re-run that restores what the last run computed shows
# the same outputs, and the record then keeps telling of the run that made them (the
# summary and `nbcache run -v` tell of this one).
TIMING = ("execution", "nbcache")


def read_bytes(path: str | os.PathLike[str]) -> bytes | None:
    """The file as it is now; None when it is no regular file or cannot be read (the run
    then says why)."""
    if not os.path.isfile(path):
        return None  # a FIFO, say: opening it would block until a writer came
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def keep_if_unchanged(path: str | os.PathLike[str], before: bytes) -> bool:
    """Put ``before`` back at ``path`` when the notebook there differs from it only in
    timing metadata (nbcache's record of each cell included); whether it did."""
    after = read_bytes(path)
    if after is None or after == before:
        return after is not None
    try:
        same = bool(_content(before) == _content(after))
    except ValueError:  # not JSON (before the run, say): a real change
        return False
    if same:
        with open(path, "wb") as f:
            f.write(before)
    return same


def _content(raw: bytes) -> Any:
    nb = json.loads(raw)
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        if isinstance(metadata, dict):
            for key in TIMING:
                metadata.pop(key, None)
    return nb
