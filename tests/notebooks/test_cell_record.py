"""The record of every cell: ``nbcache run`` (and papermill's engine) write what each code
cell did and why into its ``metadata["nbcache"]``; ``-v`` names the cells that executed;
after a failing cell the summary still counts the whole notebook; a re-run in place that
restores what the last run computed leaves the file byte for byte as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .clients import client_env, write_notebook

# A threshold for interactive auto mode: a whole-notebook run stores every cell it can,
# the assignment well under it too, so that run 2 runs only the cells that always run.
CELLS = [
    ("imports", "import time"),
    ("slow", "time.sleep(0.05)\nx = 1"),
    ("cheap", "y = x + 1"),
    ("magic", "%env NBCACHE_RECORD_TEST=1"),
    ("timed", "%%time\nz = y * 2"),
    ("uses", "time.sleep(0.02)\nw = y * 10\nw"),
    # a root handler no entry can make again
    ("logs", "import logging\nlogging.getLogger().addHandler(logging.NullHandler())"),
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**client_env(tmp_path), "NBCACHE_AUTO_MIN_SECONDS": "0.01"}


def nbcache_run(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbcache", "run", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def records(path: Path) -> dict[str, dict[str, Any]]:
    """Each code cell's record, by cell id."""
    nb = nbformat.read(path, as_version=4)
    return {c.id: dict(c.metadata.get("nbcache", {})) for c in nb.cells if c.cell_type == "code"}


def test_each_cell_records_what_it_did_and_why_run_after_run(
    tmp_path: Path, env: dict[str, str]
) -> None:
    write_notebook(tmp_path / "nb.ipynb", CELLS)
    first = nbcache_run(tmp_path, env, "nb.ipynb", "-o", "first.ipynb")
    assert first.returncode == 0, first.stderr
    one = records(tmp_path / "first.ipynb")
    assert {k: r["outcome"] for k, r in one.items()} == {
        "imports": "ran",
        "slow": "ran",
        "cheap": "ran",
        "magic": "uncached",
        "timed": "not cached",
        "uses": "ran",
        "logs": "always runs",
    }
    assert "root logger" in one["logs"]["why"] and "runs every time" in one["logs"]["why"]
    assert one["slow"]["seconds"] >= 0.05
    assert one["slow"]["why"].startswith("no earlier entry of the cell"), one["slow"]
    assert one["cheap"]["why"].startswith("no earlier entry of the cell"), one["cheap"]
    assert "line magic" in one["magic"]["why"]
    assert "`%%time`" in one["timed"]["why"]
    assert set(one["timed"]) == {"outcome", "why"}  # no seconds nbcache did not measure

    second = nbcache_run(tmp_path, env, "nb.ipynb", "-o", "second.ipynb")
    assert second.returncode == 0, second.stderr
    two = records(tmp_path / "second.ipynb")
    assert two["slow"]["outcome"] == "restored"
    assert two["slow"]["seconds"] == one["slow"]["seconds"]  # the time restoring saved
    assert two["slow"]["why"].startswith("it restored")
    assert two["uses"]["outcome"] == "restored"
    assert two["cheap"]["outcome"] == "restored"
    assert two["logs"]["outcome"] == "always runs"

    nb = nbformat.read(tmp_path / "nb.ipynb", as_version=4)
    nb.cells[3].source = "y = x + 2"
    nbformat.write(nb, tmp_path / "nb.ipynb")
    third = nbcache_run(tmp_path, env, "nb.ipynb", "-o", "third.ipynb", "-v")
    assert third.returncode == 0, third.stderr
    edited = records(tmp_path / "third.ipynb")
    assert edited["slow"]["outcome"] == "restored"
    assert edited["cheap"]["outcome"] == "ran"
    assert "code" in edited["cheap"]["why"], edited["cheap"]
    assert edited["uses"]["outcome"] == "ran"
    assert "`y`" in edited["uses"]["why"], edited["uses"]
    # -v: one line for each cell that executed, by number and first line, none for the
    # restored ones
    lines = [ln for ln in third.stdout.splitlines() if ln.startswith("nbcache run: cell")]
    assert [ln.split(":")[1].strip() for ln in lines] == [
        "cell 4 `y = x + 2`",
        "cell 5 `%env NBCACHE_RECORD_TEST=1`",
        "cell 6 `%%time`",
        "cell 7 `time.sleep(0.02)`",
        "cell 8 `import logging`",
    ]
    assert lines[0].startswith("nbcache run: cell 4 `y = x + 2`: ran (")
    assert lines[3].startswith("nbcache run: cell 7 `time.sleep(0.02)`: ran (")
    assert "`y`" in lines[3]
    summary = third.stdout.splitlines()[-1]
    assert summary.startswith("nbcache run: 7 code cells, 2 restored, 5 ran in ")
    # without -v, the summary line alone
    assert not [ln for ln in second.stdout.splitlines() if ln.startswith("nbcache run: cell")]


def test_after_a_failing_cell_the_summary_counts_the_whole_notebook(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cells = [("a", "x = 1"), ("boom", "raise ValueError('no such column')")]
    cells += [(f"later{i}", f"v{i} = {i}") for i in range(5)]
    write_notebook(tmp_path / "bad.ipynb", cells)
    run = nbcache_run(tmp_path, env, "bad.ipynb", "-o", "out.ipynb")
    assert run.returncode == 1
    summary = [ln for ln in run.stderr.splitlines() if ln.startswith("nbcache run: 7 code")]
    assert summary, run.stderr
    assert summary[0].startswith("nbcache run: 7 code cells, 0 restored, 2 ran, 5 not run in ")
    assert summary[0].endswith(
        "; stopped: ValueError: no such column (cell 3 `raise ValueError('no such column')`)"
    )
    got = records(tmp_path / "out.ipynb")
    assert got["boom"] == {"outcome": "failed", "why": "ValueError: no such column"}
    assert got["later4"] == {
        "outcome": "not run",
        "why": "the run stopped at cell 3 `raise ValueError('no such column')`",
    }


def test_a_value_that_cannot_be_pickled_keeps_its_cell_in_memory_and_why_says_so(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cells = [("lock", "import time, threading\ntime.sleep(0.03)\nlock = threading.Lock()")]
    write_notebook(tmp_path / "nb.ipynb", cells)
    run = nbcache_run(tmp_path, env, "nb.ipynb", "-o", "out.ipynb")
    assert run.returncode == 0, run.stderr
    got = records(tmp_path / "out.ipynb")["lock"]
    assert got["outcome"] == "kept in memory"
    assert got["why"].startswith("this cell's `lock` (_thread.lock) cannot be pickled"), got
    assert "to store the rest; no earlier entry" in got["why"]


def test_a_cell_stopped_by_the_timeout_says_so(tmp_path: Path, env: dict[str, str]) -> None:
    cells = [("a", "x = 1"), ("slow", "import time\ntime.sleep(60)"), ("b", "y = 2"), ("c", "")]
    write_notebook(tmp_path / "slow.ipynb", cells)
    nb = nbformat.read(tmp_path / "slow.ipynb", as_version=4)
    nb.cells[-1].metadata["nbcache"] = {"outcome": "ran"}  # an empty cell keeps no record
    nbformat.write(nb, tmp_path / "slow.ipynb")
    run = nbcache_run(tmp_path, env, "slow.ipynb", "-o", "out.ipynb", "--timeout", "2")
    assert run.returncode == 1
    stopped = "a cell ran longer than the --timeout of 2 s"
    assert "3 code cells, 0 restored, 2 ran, 1 not run in " in run.stderr, run.stderr
    assert f"; stopped: {stopped} (cell 3 `import time`)" in run.stderr
    got = records(tmp_path / "out.ipynb")
    assert got["slow"] == {"outcome": "failed", "why": stopped}
    assert got["b"] == {
        "outcome": "not run",
        "why": "the run stopped at cell 3 `import time`",
    }
    assert got["c"] == {}


def test_a_rerun_in_place_that_restores_leaves_the_notebook_and_its_records_byte_for_byte(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "nb.ipynb"
    # not the %%time cell: the times it prints are outputs, new on every run
    write_notebook(path, [c for c in CELLS if c[0] != "timed"])
    assert nbcache_run(tmp_path, env, "nb.ipynb").returncode == 0
    after_first = path.read_bytes()
    assert records(path)["slow"]["outcome"] == "ran"
    again = nbcache_run(tmp_path, env, "nb.ipynb")
    assert again.returncode == 0, again.stderr
    assert "6 code cells, 4 restored, 2 ran" in again.stdout
    # the cells that ran again (uncached, always runs) took other times; the file keeps
    # the record of the run that made its outputs
    assert path.read_bytes() == after_first
    # a real change is written, records and all
    nb = nbformat.read(path, as_version=4)
    (uses,) = [c for c in nb.cells if c.get("id") == "uses"]
    uses.source = "w = y * 11\nw"
    nbformat.write(nb, path)
    assert nbcache_run(tmp_path, env, "nb.ipynb").returncode == 0
    assert records(path)["slow"]["outcome"] == "restored"
    assert records(path)["uses"]["outcome"] == "ran"


def test_papermills_engine_writes_the_same_records(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import papermill as pm

    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_notebook(tmp_path / "in.ipynb", [("params", "alpha = 1"), *CELLS])

    def papermill(out: str) -> dict[str, dict[str, Any]]:
        pm.execute_notebook(
            str(tmp_path / "in.ipynb"),
            str(tmp_path / out),
            parameters={"alpha": 2},
            engine_name="nbcache",
            cwd=str(tmp_path),
            progress_bar=False,
        )
        return records(tmp_path / out)

    one = papermill("one.ipynb")
    assert one["slow"]["outcome"] == "ran" and one["slow"]["seconds"] >= 0.05
    assert one["cheap"]["outcome"] == "ran"
    assert one["timed"]["outcome"] == "not cached"
    two = papermill("two.ipynb")
    assert two["slow"]["outcome"] == "restored"
    assert two["slow"]["seconds"] == one["slow"]["seconds"]
    assert two["injected-parameters"]["outcome"] == "restored"


def test_papermills_engine_records_a_failure_and_the_cells_it_did_not_reach(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import papermill as pm

    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cells = [("a", "x = 1"), ("boom", "raise ValueError('bad')"), ("b", "y = 2")]
    write_notebook(tmp_path / "in.ipynb", cells)
    with pytest.raises(pm.PapermillExecutionError):
        pm.execute_notebook(
            str(tmp_path / "in.ipynb"),
            str(tmp_path / "out.ipynb"),
            engine_name="nbcache",
            cwd=str(tmp_path),
            progress_bar=False,
        )
    got = records(tmp_path / "out.ipynb")
    assert got["a"]["outcome"] == "ran"
    assert got["boom"] == {"outcome": "failed", "why": "ValueError: bad"}
    # named by its first line too: papermill has since put an error cell above it
    assert got["b"] == {
        "outcome": "not run",
        "why": "the run stopped at cell 3 `raise ValueError('bad')`",
    }
