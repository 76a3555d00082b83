"""``papermill --engine nbcache``, run by the real papermill: a sweep over a parameter
restores the cells upstream of its first use and executes the rest, with the outputs
papermill's own engine gives."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import pytest

from nbcache import CacheError
from nbcache.notebooks.papermill import NbcacheEngine

from .clients import BIN, client_env, executed, outcomes, shown, write_notebook
from .test_run_batches import Requests

# Each body appends its name to runs.log when it executes (a write is no input).
CELLS = [
    ("setup", "%load_ext nbcache"),  # the kernel has it already: this must stay silent
    ("params", "alpha = 0.1"),
    ("load", "import json\nopen('runs.log', 'a').write('load\\n')\nraw = list(range(1000))"),
    ("total", "open('runs.log', 'a').write('total\\n')\ntotal = sum(raw)\nprint('total', total)"),
    ("scaled", "open('runs.log', 'a').write('scaled\\n')\nscaled = total * alpha\nscaled"),
    ("report", "open('runs.log', 'a').write('report\\n')\nprint(json.dumps({'a': alpha}))"),
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """papermill, in this process, starts its kernels with this process's environment:
    make it the test's own."""
    env = client_env(tmp_path)
    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def papermill(folder: Path, source: str, out: str, engine: str | None, **parameters: Any) -> None:
    """papermill's Python API, as a script calls it (its CLI calls the same function)."""
    pm.execute_notebook(
        str(folder / source),
        str(folder / out),
        parameters=parameters,
        engine_name=engine,
        cwd=str(folder),
        progress_bar=False,
    )


def test_papermill_finds_the_engine_by_its_entry_point() -> None:
    from papermill.engines import papermill_engines

    assert papermill_engines.get_engine("nbcache") is NbcacheEngine


def test_a_sweep_restores_the_cells_upstream_of_the_parameter(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(folder / "in.ipynb", CELLS, tags={"params": ["parameters"]})

    # the command line first (as docs/whole-notebooks.md gives it), then the Python API
    command = ["--engine", "nbcache", "in.ipynb", "out-1.ipynb", "-p", "alpha", "0.5"]
    done = subprocess.run([str(BIN / "papermill"), *command], cwd=folder, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert executed(folder) == ["load", "total", "scaled", "report"]
    first = outcomes(folder)
    # the kernel loaded nbcache in auto mode and knew each cell by its id
    assert [cell_id for cell_id, _ in first] == [
        "setup",
        "params",
        "injected-parameters",
        "load",
        "total",
        "scaled",
        "report",
    ]
    assert {outcome for _, outcome in first[1:]} == {"ran"}

    alone = Requests(monkeypatch)
    papermill(folder, "in.ipynb", "out-2.ipynb", "nbcache", alpha=2)
    assert executed(folder) == ["scaled", "report"]
    # restored cells went to the kernel in batches, as under nbcache run, not one by one:
    # a batch is tried after a cell that restored or runs uncached, so `load` (after the
    # parameters ran) goes alone, and `params` and `total` in batches
    assert alone.cells == ["setup", "injected-parameters", "load", "scaled", "report"]
    assert dict(outcomes(folder)) == {
        "setup": "uncached",  # a line magic runs as without nbcache
        "params": "restored",
        "injected-parameters": "ran",
        "load": "restored",
        "total": "restored",
        "scaled": "ran",
        "report": "ran",
    }

    # papermill's own engine is the reference
    papermill(folder, "in.ipynb", "plain.ipynb", None, alpha=2)
    assert executed(folder) == ["load", "total", "scaled", "report"]
    assert outcomes(folder) == []  # no nbcache in papermill's own kernel
    assert shown(folder / "out-2.ipynb") == shown(folder / "plain.ipynb")
    assert "999000" in json.dumps(shown(folder / "out-2.ipynb")[5])  # 999 * 1000 / 2 * 2


def test_a_kernel_of_another_language_is_refused_by_name(folder: Path) -> None:
    spec = folder / "jupyter-data" / "kernels" / "ir"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps({"argv": ["false", "{connection_file}"], "display_name": "R", "language": "R"})
    )
    write_notebook(folder / "in.ipynb", CELLS[1:3], kernel="ir")
    with pytest.raises(CacheError, match="the kernel 'ir' runs R; nbcache caches Python kernels"):
        papermill(folder, "in.ipynb", "out.ipynb", "nbcache")


def test_nbcache_warnings_go_to_papermills_log_not_into_the_notebook(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cells = [("make", "import threading\nlock = threading.Lock()\nx = 1")]
    write_notebook(folder / "in.ipynb", cells)
    with caplog.at_level("WARNING", logger="papermill"):
        papermill(folder, "in.ipynb", "out.ipynb", "nbcache")
    assert shown(folder / "out.ipynb") == [(cells[0][1], [])]
    said = [r.getMessage() for r in caplog.records if "cannot be pickled" in r.getMessage()]
    assert said and said[0].startswith("nbcache: cell 2 `import threading`: this cell's `lock`")
    assert dict(outcomes(folder)) == {"make": "ran"}  # the cell log keeps its own records


def test_a_run_again_with_the_same_parameters_starts_no_kernel(folder: Path) -> None:
    """The engine keeps the notebook's record as nbcache run does: run again with the same
    parameters, nothing changed, it writes the stored outputs with no kernel."""
    write_notebook(folder / "in.ipynb", CELLS, tags={"params": ["parameters"]})
    papermill(folder, "in.ipynb", "one.ipynb", "nbcache", alpha=2)
    assert executed(folder) == ["load", "total", "scaled", "report"]
    assert outcomes(folder)  # a kernel ran the cells and logged them

    papermill(folder, "in.ipynb", "two.ipynb", "nbcache", alpha=2)
    assert executed(folder) == []
    assert outcomes(folder) == []  # no kernel: nothing logged a cell
    assert shown(folder / "two.ipynb") == shown(folder / "one.ipynb")
    nb = nbformat.read(folder / "two.ipynb", as_version=4)
    for cell in nb.cells:
        assert cell.metadata["papermill"]["status"] == "completed"
        if cell.cell_type == "code":
            assert cell.metadata["nbcache"]["outcome"] == "restored"
            assert cell.metadata["nbcache"]["why"].endswith("no kernel started")
    assert nb.metadata["language_info"]["name"] == "python"
    assert nb.metadata["papermill"]["parameters"] == {"alpha": 2}

    papermill(folder, "in.ipynb", "three.ipynb", "nbcache", alpha=3)  # another parameter
    assert executed(folder) == ["scaled", "report"]
    assert dict(outcomes(folder))["scaled"] == "ran"
    (folder / "data.txt").write_text("")  # a file no cell reads changes nothing
    papermill(folder, "in.ipynb", "four.ipynb", "nbcache", alpha=3)
    assert executed(folder) == [] and outcomes(folder) == []
    assert shown(folder / "four.ipynb") == shown(folder / "three.ipynb")
