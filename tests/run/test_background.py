"""Background cells in a fresh InteractiveShell: return at once, finish later, never stale."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbcache.ui.widgets import widgets_wanted


class Gate:
    """Holds a background body until the test lets it go; not one of the cell's inputs."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.runs = 0

    def hold(self) -> None:
        self.runs += 1
        self.entered.set()
        assert self.release.wait(10)

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (Gate, ())


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcache")
    shell.user_ns["gate"] = Gate()
    yield shell
    shell.run_line_magic("unload_ext", "nbcache")
    shell.atexit_operations()
    atexit.unregister(shell.atexit_operations)
    InteractiveShell.clear_instance()


def run(shell: InteractiveShell, cell: str) -> Any:
    result = shell.run_cell(cell, store_history=True)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec  # type: ignore[misc]
    return result.result


CELL = "%%cache -b -n job\nimport sys\ngate.hold()\nprint('working')\nanswer = 6 * 7\n"


def test_returns_while_the_body_runs(ip: InteractiveShell) -> None:
    """The cell returns while its body is still blocked; other cells run meanwhile."""
    gate = ip.user_ns["gate"]
    with capture_output() as shown:
        run(ip, CELL)
    assert gate.entered.wait(10)
    assert "answer" not in ip.user_ns  # not there until the task ends
    assert run(ip, "1 + 1") == 2  # the kernel is free
    gate.release.set()
    ip.run_line_magic("nbcache", "wait job")
    assert ip.user_ns["answer"] == 42
    assert "runs in the background" in shown.stdout


def test_output_goes_to_the_task_not_to_other_cells(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the body prints is recorded for the task, not shown in the cell running meanwhile."""
    gate = ip.user_ns["gate"]
    run(ip, CELL.replace("print('working')", "print('working'); print('oops', file=sys.stderr)"))
    assert gate.entered.wait(10)
    capsys.readouterr()
    run(ip, "print('foreground')")
    gate.release.set()
    task = ip.magics_manager.registry["NbcacheMagics"].cells.tasks["job"]
    task.future.result(10)
    meanwhile = capsys.readouterr()
    assert "working" not in meanwhile.out and "oops" not in meanwhile.err
    assert "foreground" in meanwhile.out


def test_rerun_is_a_hit_shown_at_once(ip: InteractiveShell) -> None:
    """After the task ends its entry is stored: running the cell again restores at once."""
    gate = ip.user_ns["gate"]
    gate.release.set()
    run(ip, CELL)
    ip.run_line_magic("nbcache", "wait")
    ip.user_ns.pop("answer")
    cells = ip.magics_manager.registry["NbcacheMagics"].cells
    cells.tasks.clear()  # as in a restarted kernel: no task of that name yet
    with capture_output() as again:
        run(ip, CELL)
    ip.run_line_magic("nbcache", "wait job")  # a restored background cell is a done task
    assert cells.tasks["job"].state == "done"
    assert ip.user_ns["answer"] == 42  # restored synchronously, no wait needed
    shown = [o.data.get("text/plain", "") for o in again.outputs]
    assert any(line.startswith("nbcache: restored answer") for line in shown)
    assert "working" in again.stdout  # the task's output replays on the hit
    assert gate.runs == 1


def test_failure_is_shown_and_nothing_stored(ip: InteractiveShell) -> None:
    """A failing background body ends failed with its traceback; a rerun runs again."""
    cell = "%%cache -b -n bad\nprobe_runs = 1\nraise ValueError('late failure')\n"
    with capture_output() as shown:
        run(ip, cell)
        ip.run_line_magic("nbcache", "wait bad")
    assert "bad failed" in shown.stdout and "ValueError: late failure" in shown.stdout
    assert "probe_runs" not in ip.user_ns
    with capture_output() as tasks:
        ip.run_line_magic("nbcache", "tasks")
    assert "failed" in tasks.stdout and "bad" in tasks.stdout


def test_cancel_stops_at_the_next_progress_step(ip: InteractiveShell) -> None:
    """Cancel stops a running thread task at its next nbcache.progress step."""
    gate = ip.user_ns["gate"]
    cell = (
        "%%cache -b -n long\nimport nbcache\ndone_steps = 0\n"
        "for i in nbcache.progress(range(100)):\n    gate.hold()\n    done_steps = i\n"
    )
    run(ip, cell)
    assert gate.entered.wait(10)
    task = ip.magics_manager.registry["NbcacheMagics"].cells.tasks["long"]
    assert task.cancel()
    gate.release.set()
    ip.run_line_magic("nbcache", "wait long")
    assert task.state == "cancelled"
    assert gate.runs == 1 and "done_steps" not in ip.user_ns


def test_unknown_task_and_executor_are_usage_errors(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting on a task that does not exist, or an executor not available, is a UsageError."""
    from IPython.core.error import UsageError

    monkeypatch.delenv("NBCACHE_DASK", raising=False)  # no dask cluster configured

    with pytest.raises(UsageError):
        ip.run_line_magic("nbcache", "wait nope")
    result = ip.run_cell("%%cache -b --executor dask\nx = 1\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "x" not in ip.user_ns


def test_widgets_are_chosen_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain shell gets text cards; NBCACHE_WIDGETS forces either."""
    shell = object()
    assert not widgets_wanted(shell)
    monkeypatch.setenv("NBCACHE_WIDGETS", "1")
    assert widgets_wanted(shell)
    monkeypatch.setenv("NBCACHE_WIDGETS", "0")
    assert not widgets_wanted(shell)


def test_process_executor_runs_elsewhere_and_brings_variables_back(ip: InteractiveShell) -> None:
    """--executor process: inputs go to a worker process, bound variables come back."""
    run(ip, "import os\nbase = 40\ndef helper(x):\n    return x + 2\n")
    cell = (
        "%%cache -b --executor process -n remote\nimport os\n"
        "worker_pid = os.getpid()\nanswer = helper(base)\nprint('in the worker')\n"
    )
    run(ip, cell)
    ip.run_line_magic("nbcache", "wait remote")
    task = ip.magics_manager.registry["NbcacheMagics"].cells.tasks["remote"]
    assert task.state == "done", task.future.exception()
    assert ip.user_ns["answer"] == 42
    assert ip.user_ns["worker_pid"] != os.getpid()
    assert ip.user_ns["os"] is os  # modules come back as imports, not copies


def test_a_function_made_on_a_worker_reads_the_live_notebook(ip: InteractiveShell) -> None:
    """A function a process-executor cell defines comes back reading the notebook's own
    globals, not the worker's copy of them."""
    run(ip, "scale = 2")
    run(ip, "%%cache -b --executor process -n maker\ndef times(x):\n    return scale * x\n")
    ip.run_line_magic("nbcache", "wait maker")
    task = ip.magics_manager.registry["NbcacheMagics"].cells.tasks["maker"]
    assert task.state == "done", task.future.exception()
    run(ip, "scale = 10")
    assert run(ip, "times(3)") == 30
