"""``nbcache run`` restores consecutive cells in one kernel request: the executed
notebook is the one a request per cell writes (outputs, prompt numbers, each cell's
record), ``In``/``Out``/``_`` are as a plain run leaves them, and a cell whose check
fails in the kernel executes, with every cell after it, in requests of its own."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

from nbcache.notebooks import runner

from .clients import write_notebook
from .test_nbcache_run import CELLS as DEPENDENT

RICH = [
    "%matplotlib inline\nimport numpy as np\nimport matplotlib.pyplot as plt",
    "x = np.arange(10)\nprint('x is', x)\nimport sys\nprint('to stderr', file=sys.stderr)\nx.sum()",
    "from IPython.display import HTML, Markdown, display\ndisplay(HTML('<b>bold</b>'))\n"
    "print('between')\ndisplay(Markdown('*md*'))\ny = x * 2\ny[:3]",
    "fig, ax = plt.subplots()\nax.plot(x, y)\nplt.show()\nz = int(y.max())",
    "z + 1",
    "print('no value')",
    "z * 3;",
    "last = (Out[2], _, __)\nlast",
    "w = _[0] + 1\nw",
    "seen = len(In), _i[:5]\nseen",
    "print(len(Out), sorted(Out))",
    "z - 1",
]
READS = [
    "base = 10\nprint('base', base)",
    "with open('data.txt') as f:\n    data = f.read()\nprint('read', data)\ndata.upper()",
    "n = len(data)\nn",
    "twice = data * 2\ntwice",
    "print('done', n)",
]


class Requests:
    """Code cells nbclient sent in a request of their own."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cells: list[str] = []
        own = nbclient.NotebookClient.async_execute_cell

        async def counted(client: Any, cell: Any, *args: Any, **kwargs: Any) -> Any:
            if cell.cell_type == "code":
                self.cells.append(cell.get("id"))
            return await own(client, cell, *args, **kwargs)

        monkeypatch.setattr(nbclient.NotebookClient, "async_execute_cell", counted)


_AGO = re.compile(r"stored [^,]+ ago")


def written(path: Path) -> list[Any]:
    """Each cell as the executed notebook has it, but for when it ran."""
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        cell = json.loads(json.dumps(cell))
        cell["metadata"].pop("execution", None)
        record = cell["metadata"].get("nbcache")
        if record:
            record["why"] = _AGO.sub("stored some time ago", record["why"])
            if record["outcome"] != "restored":
                record.pop("seconds", None)  # how long its body took this time
        cells.append(cell)
    return cells


def _said(cell: runner.CellOutcome) -> str:
    """A cell's line in ``nbcache run -v``, but for when it was stored and how long it ran."""
    line = _AGO.sub("", cell.line())
    return line if cell.outcome == "restored" else re.sub(r" \(\d+ ms\)", "", line)


def run(folder: Path, out: str) -> runner.RunSummary:
    _, summary = runner.run_notebook(folder / "nb.ipynb", out=folder / out)
    assert summary.error is None, summary.line()
    return summary


def edited_twice(
    folder: Path, cells: list[str], monkeypatch: pytest.MonkeyPatch, edit: int = -1
) -> tuple[list[str], list[str]]:
    """Run the notebook, edit one cell, then run it batched and, on a copy of the store,
    a request per cell; the cells each sent in requests of their own."""
    ids = [(f"c{i}", source) for i, source in enumerate(cells)]
    write_notebook(folder / "nb.ipynb", ids)
    run(folder, "first.ipynb")
    edited = list(cells)
    changed = edited[edit].replace("raw ** 2", "raw ** 3")  # what it binds changes too
    edited[edit] = changed if changed != edited[edit] else changed + "\n_edited = 1"
    write_notebook(folder / "nb.ipynb", [(f"c{i}", s) for i, s in enumerate(edited)])
    shutil.copytree(folder / "store", folder / "store-2")
    requests = Requests(monkeypatch)
    batched = run(folder, "batched.ipynb")
    alone, requests.cells = requests.cells, []
    monkeypatch.setenv("NBCACHE_DIR", str(folder / "store-2"))
    monkeypatch.setenv("NBCACHE_RUN_BATCHES", "0")
    single = run(folder, "single.ipynb")
    assert written(folder / "batched.ipynb") == written(folder / "single.ipynb")
    assert batched.line().split(" in ")[0] == single.line().split(" in ")[0]
    lines = [[_said(c) for c in s.cells] for s in (batched, single)]
    assert lines[0] == lines[1]  # what `nbcache run -v` says of each cell
    assert requests.cells == [f"c{i}" for i in range(len(cells))]
    return alone, [c.outcome for c in batched.cells]


def test_rich_outputs_and_the_history_are_written_as_a_request_per_cell_writes(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, outcomes = edited_twice(folder, RICH, monkeypatch)
    # the cell that begins with %matplotlib goes alone (its magic runs, its code restores);
    # the cells that read IPython's history run every time, each alone; the edited cell
    # ends the batch after them
    assert alone == ["c0", "c7", "c8", "c9", "c10", "c11"]
    assert outcomes[0] == "restored"
    assert outcomes[7:11] == ["uncached"] * 4
    assert outcomes.count("restored") == len(RICH) - 5
    nb = nbformat.read(folder / "batched.ipynb", as_version=4)
    kinds = {o.output_type for c in nb.cells for o in c.get("outputs", [])}
    assert kinds == {"stream", "display_data", "execute_result"}
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert [c.execution_count for c in nb.cells[1:]] == list(range(1, len(RICH) + 1))


def test_cells_that_depend_on_an_edit_run_and_the_rest_restore_in_batches(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cell 3 edited: 4, 7, 8 read what it binds (7 and 8 through summary's result)
    alone, outcomes = edited_twice(folder, DEPENDENT, monkeypatch, edit=2)
    ran, restored = "ran", "restored"
    assert outcomes == [restored] * 2 + [ran] * 2 + [restored] * 2 + [ran] * 2 + [restored, ran]
    # one request for c0 and c1; after a cell that ran, one cell alone says whether the
    # next may restore; a batch that stops at once (c6) costs one request more
    assert alone == ["c2", "c3", "c4", "c6", "c7", "c8", "c9"]


def test_a_file_changed_since_a_cell_read_it_runs_it_and_every_cell_after_it_alone(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "data.txt").write_text("abc")
    ids = [(f"c{i}", source) for i, source in enumerate(READS)]
    write_notebook(folder / "nb.ipynb", ids)
    run(folder, "first.ipynb")
    (folder / "data.txt").write_text("abcd")
    requests = Requests(monkeypatch)
    summary = run(folder, "second.ipynb")
    assert [c.outcome for c in summary.cells] == ["restored"] + ["ran"] * 4
    assert requests.cells == ["c1", "c2", "c3", "c4"]  # the batch stopped at c1, unrun
    nb = nbformat.read(folder / "second.ipynb", as_version=4)
    shown = [json.dumps(c.outputs) for c in nb.cells[2:]]
    assert "read abcd" in shown[0] and "'ABCD'" in shown[0]
    assert "'abcdabcd'" in shown[2] and "done 4" in shown[3]
    assert [c.execution_count for c in nb.cells[1:]] == [1, 2, 3, 4, 5]
