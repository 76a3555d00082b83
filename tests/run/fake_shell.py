"""A shell for running cached cells with no IPython: the port ``run/cell.py`` needs."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nbcache.run.body import run_source
from nbcache.run.report import CellReport
from nbcache.tasks.task import Task

__all__ = ["FakeShell"]


class Publisher:
    """Stands for IPython's display publisher: what the cell displayed, in order."""

    def __init__(self) -> None:
        self.shown: list[dict[str, Any]] = []

    def publish(self, data: dict[str, Any], metadata: Any = None, **kwargs: Any) -> None:
        self.shown.append(data)


class Card:
    def __init__(self, task: Task[Any]) -> None:
        self.task = task
        self.outputs: list[tuple[Any, ...]] = []
        self.reports: list[CellReport] = []

    def output(self, kind: str, *payload: Any) -> None:
        self.outputs.append((kind, *payload))

    def finished(self, report: CellReport) -> None:
        self.reports.append(report)


class FakeShell:
    """Plain Python in a dict; records reports and cards instead of showing them."""

    cell_id: str | None = None

    def __init__(self) -> None:
        self.user_ns: dict[str, Any] = {"__builtins__": builtins}  # as IPython starts
        self.display_publisher = Publisher()
        self.reports: list[CellReport] = []
        self.cards: list[Card] = []
        self.paged: list[Any] = []
        self.results: list[dict[str, Any]] = []

    def transform(self, cell: str) -> str:
        return cell

    def execute(
        self, source: str, namespace: dict[str, Any] | None = None, number: int | None = None
    ) -> Any:
        return run_source(source, self.user_ns if namespace is None else namespace)

    def cell_number(self) -> int | None:
        return None

    def report(self, report: CellReport) -> None:
        self.reports.append(report)

    def card(self, task: Task[Any]) -> Card:
        card = Card(task)
        self.cards.append(card)
        return card

    def flush_figures(self) -> None:
        pass

    def show_result(
        self, value: Any, shown: tuple[dict[str, Any], dict[str, Any]] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        data, meta = shown if shown is not None else ({"text/plain": repr(value)}, {})
        self.results.append(data)
        return data, meta

    @contextmanager
    def paging(self, add: Callable[[Any, int], None]) -> Iterator[None]:
        yield

    def page(self, data: Any, start: int) -> None:
        self.paged.append(data)

    def publish(
        self, data: dict[str, Any], metadata: dict[str, Any] | None = None, **shown: Any
    ) -> None:
        self.display_publisher.publish(data, metadata, **shown)
