"""The port between running a cell and the shell it runs in: what a cell run needs from
IPython (its namespace, transform, execute, display), implemented by
:mod:`nbcache.ui.ipython` and, in tests, by a plain class with no IPython at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ..tasks.task import Task
from .report import Card, CellReport

__all__ = ["Shell", "transformed_once"]


class Shell(Protocol):
    """What running a cell needs from the interactive shell (see nbcache.ui.ipython)."""

    cell_id: str | None

    @property
    def user_ns(self) -> dict[str, Any]: ...

    @property
    def display_publisher(self) -> Any: ...

    def transform(self, cell: str) -> str: ...

    def execute(
        self, source: str, namespace: dict[str, Any] | None = None, number: int | None = None
    ) -> Any:
        """Run ``source``; ``number`` is the prompt it is shown under (None: this cell's)."""
        ...

    def cell_number(self) -> int | None:
        """The prompt number of the cell running now (None: the shell has none)."""
        ...

    def report(self, report: CellReport) -> None:
        """Say what a cell run did (a status line, in IPython)."""

    def card(self, task: Task[Any]) -> Card:
        """Show a card that follows ``task`` from now on, and return it."""
        ...

    def flush_figures(self) -> None: ...

    def show_result(
        self, value: Any, shown: tuple[dict[str, Any], dict[str, Any]] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Show ``value`` as the cell's result (``Out[n]``, ``_``), formatted now or as
        ``shown`` (a hit shows what the miss showed); the ``(data, metadata)`` shown."""
        ...

    def paging(self, add: Callable[[Any, int], None]) -> AbstractContextManager[None]:
        """Within the block, hand what goes to the pager (``%prun``, ``?``) to ``add`` too."""
        ...

    def page(self, data: Any, start: int) -> None:
        """Send ``data`` to the pager again (a hit of a cell that paged)."""

    def publish(
        self, data: dict[str, Any], metadata: dict[str, Any] | None = None, **shown: Any
    ) -> None:
        """Show ``data``; ``shown`` as IPython's ``publish`` takes it (``transient``, its
        display id; ``update``)."""


@contextmanager
def transformed_once(owner: Any, source: str, transformed: str) -> Iterator[None]:
    """While in the block, the next ``owner.transform_cell(source)`` (IPython's shell, or
    its input transformer manager) returns ``transformed``, made already, instead of
    tokenizing the cell again; any other cell, and every later call, get the class's
    own method."""

    def once(cell: str) -> Any:
        del owner.transform_cell  # the class's again, for every later call
        return transformed if cell == source else owner.transform_cell(cell)

    owner.transform_cell = once
    try:
        yield
    finally:
        if "transform_cell" in vars(owner):
            del owner.transform_cell
