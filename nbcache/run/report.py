"""What a cached cell did, as data: the port between running cells and showing them.

The runner hands a :class:`CellReport` to the shell and feeds a :class:`Card`
that the shell made for a background task; how either looks (a status line, a
widget, plain text) is the shell's business (see :mod:`nbcache.ui`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Card", "CellReport"]


@dataclass(frozen=True)
class CellReport:
    """One run of a cached cell.

    ``size`` is what the entry takes in the store, the same number listings
    show; 0 when it was kept in memory only (``where`` says why).
    """

    outcome: Literal["restored", "computed"]
    names: tuple[str, ...]
    seconds: float  # restoring, or computing
    size: int = 0
    where: Literal["store", "memory", "no-store"] = "store"
    computed_seconds: float = 0.0  # a restore: what computing took
    computed_at: float = 0.0  # a restore: when it was computed (seconds since the epoch)


class Card(Protocol):
    """The shell's view of a background task; the task itself reports its state."""

    def output(self, kind: str, *payload: Any) -> None:
        """Show one piece of the body's output (stdout, stderr, display) as it comes."""

    def finished(self, report: CellReport) -> None:
        """The body ended and its variables were kept: say what became of them."""
