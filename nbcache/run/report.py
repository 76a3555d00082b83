"""What a cached cell did, as data: the port between running cells and showing them.

The runner hands a :class:`CellReport` to the shell and feeds a :class:`Card`
that the shell made for a background task; how either looks (a status line, a
widget, plain text) is the shell's business (see :mod:`nbcache.ui`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Card", "CellReport", "Resume", "age_text"]


def age_text(seconds: float) -> str:
    """An age as ``saved ... ago`` says it, in whole units: ``40 s``, ``3 min``, ``2 h``,
    ``5 d`` (``3 min 0 s ago`` is more precision than an age needs)."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{max(0, int(seconds))} s"


@dataclass(frozen=True)
class Resume:
    """Where a run picked up an unfinished run of the same cell: at its last checkpoint.

    ``age`` is how old the checkpoint was when the run resumed from it (fixed then, so a
    card that stays on screen for hours does not tell a growing age).
    """

    step: int
    total: int | None
    age: float  # seconds from the checkpoint's save to the resume
    seconds_before: float = 0.0  # loop seconds the runs before this one had done

    @property
    def text(self) -> str:
        """``resumed at step 412 of 1000, saved 3 min ago``."""
        of = f" of {self.total}" if self.total is not None else ""
        return f"resumed at step {self.step}{of}, saved {age_text(self.age)} ago"


@dataclass(frozen=True)
class CellReport:
    """One run of a cached cell, or (``resumed``) the moment it picked up a checkpoint.

    ``size`` is what the entry takes in the store, the same number listings
    show; 0 when it was kept in memory only (``where`` says why).  A ``resumed``
    report names the variables the checkpoint put back, ``seconds`` is what
    finding and restoring it took and ``size`` the checkpoint's size.
    """

    outcome: Literal["restored", "computed", "resumed"]
    names: tuple[str, ...]
    seconds: float  # restoring, or computing
    size: int = 0
    where: Literal["store", "memory", "no-store"] = "store"
    computed_seconds: float = 0.0  # a restore: what computing took
    computed_at: float = 0.0  # a restore: when it was computed (seconds since the epoch)
    resumed: Resume | None = None  # the run started at a checkpoint (resumed, computed)
    # a computed cell: pickling and writing its entry after the body ended, which the
    # user waited for too (0.0: not measured)
    store_seconds: float = 0.0
    # the cell only imports, which caching cannot make faster: the line says so
    only_imports: bool = False


class Card(Protocol):
    """The shell's view of a background task; the task itself reports its state."""

    def output(self, kind: str, *payload: Any) -> None:
        """Show one piece of the body's output (stdout, stderr, display) as it comes."""

    def finished(self, report: CellReport) -> None:
        """The body ended and its variables were kept: say what became of them."""
