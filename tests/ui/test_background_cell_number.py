"""A background cell's traceback names its own cell (``Cell In[3]`` under prompt ``[3]``),
however late its thread starts, in a fresh InteractiveShell."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbcache.tasks.task import Task
from tests.shells import close_shell, new_shell


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


def test_a_late_thread_compiles_the_body_under_its_cells_number(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body starts only after the cell returned and the prompt counted on, as when the
    thread pool is busy: the traceback still points at the cell that started it."""
    held: list[tuple[Task[Any], Any, Any]] = []
    submit = Task.submit_to

    def later(self: Task[Any], executor: Any, fn: Any) -> Task[Any]:
        held.append((self, executor, fn))
        return self

    monkeypatch.setattr(Task, "submit_to", later)
    with capture_output():
        ip.run_cell("x = 1", store_history=True)
        ip.run_cell("%%cache -b -n bad\ny = x\nraise ValueError('late')\n", store_history=True)
        number = ip.execution_count - 1  # the prompt of the background cell
        ip.run_cell("z = 2", store_history=True)
    ((task, executor, body),) = held
    submit(task, executor, body)
    assert task.settled.wait(30)
    error = task.future.exception()
    assert isinstance(error, ValueError)
    frames = traceback.extract_tb(error.__traceback__)
    cells = ip.compile._filename_map  # type: ignore[attr-defined]
    user = [f.filename for f in frames if "/nbcache/" not in f.filename]
    assert user and {cells.get(name) for name in user} == {number}, user
