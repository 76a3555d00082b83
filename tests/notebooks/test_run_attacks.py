"""``nbcache run`` against a plain run (nbclient, as ``jupyter execute`` runs it) on the
notebooks a careless user writes: cells that read IPython's history, a failing cell,
displays updated or cleared from another cell. Each run of nbcache, the first, one
after an edit and one that restores, writes what the plain run writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat

from nbcache.notebooks import runner
from nbcache.notebooks.kernels import execute_notebook

from .clients import write_notebook

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shown(nb: Any) -> list[tuple[Any, list[Any]]]:
    """Each code cell's prompt number and outputs as a reader sees them (runs of one
    stream joined: the kernel may split a stream anywhere; colours left out)."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[Any] = []
        for out in json.loads(json.dumps(cell.outputs)):
            out.pop("metadata", None) if not out.get("metadata") else None
            if "traceback" in out:
                out["traceback"] = [_ANSI.sub("", line) for line in out["traceback"]]
            last = outputs[-1] if outputs else None
            if out["output_type"] == "stream" and last and last.get("name") == out["name"]:
                last["text"] += out["text"]
            else:
                outputs.append(out)
        cells.append((cell.execution_count, outputs))
    return cells


def plain(folder: Path) -> list[tuple[Any, list[Any]]]:
    """The notebook run as without nbcache, errors allowed (nbclient stops at the first
    as nbcache run does)."""
    nb = nbformat.read(folder / "nb.ipynb", as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBCACHE_")}
    try:
        execute_notebook(nb, cwd=folder, env=env, timeout=60)
    except Exception:  # noqa: BLE001 - a failing cell: the notebook as written so far
        pass
    return shown(nb)


def cached(folder: Path, out: str = "out.ipynb") -> tuple[list[Any], runner.RunSummary]:
    _, summary = runner.run_notebook(folder / "nb.ipynb", out=folder / out, timeout=60)
    return shown(nbformat.read(folder / out, as_version=4)), summary


def write(folder: Path, cells: list[str]) -> None:
    write_notebook(folder / "nb.ipynb", [(f"c{i}", source) for i, source in enumerate(cells)])


HISTORY = [
    "a = 1\na",
    "b = a + 1\nb",
    "c = _ * 10\nc",
    "d = (__, Out[2], _oh[2], _2)\nd",
    "e = _i2\ne",
    "f = In[1], In[2], _ih[-1]\nf",  # In[1]: a cell restored in a batch
    "g = [x for x in range(2) if _ii]\ng",
    "def last():\n    return _\n\nclass Last:\n    def get(self):\n        return last()",
    "b",
    "h = Last().get() * 10\nh",  # reads `_` through a class and a function of the notebook
]


def test_cells_that_read_ipythons_history_are_never_stale(folder: Path) -> None:
    """`_`, `Out`, `_i2` and `In` hold what the cells before gave: an edit above them
    changes them though no variable they read changed. And `In` holds the cell as
    IPython transformed it, not the call auto mode wraps it in."""
    write(folder, HISTORY)
    assert cached(folder)[0] == plain(folder)
    edited = [HISTORY[0], HISTORY[1].replace("a + 1", "a + 2"), *HISTORY[2:]]
    write(folder, edited)
    after, summary = cached(folder)
    assert after == plain(folder), summary.line()
    assert after[4][1][0]["data"]["text/plain"] == repr("b = a + 2\nb")  # `_i2`
    why = {c.cell_id: c.why for c in summary.cells}
    assert "IPython's history (`_`)" in why["c2"]
    # a notebook function's reads of the history are keyed by value, as its globals are
    assert "global `_` changed (used by `last()`)" in why["c9"]


FAILING = ["a = 1\nprint(a)", "def f(x):\n    return 1 / x\n\ny = f(a - 1)", "z = 1"]


def test_a_failing_cell_shows_the_traceback_a_plain_run_shows(folder: Path) -> None:
    """No frame of the `%%cache --auto` call auto mode wraps the cell in, nor the frames
    it hides: the user's lines, as without nbcache."""
    write(folder, FAILING)
    expected = plain(folder)
    for _ in range(2):  # run 2 restores the first cell and runs the failing one again
        found, summary = cached(folder)
        assert "ZeroDivisionError" in str(summary.error)
        assert found == expected
    # the code after a set-up magic runs apart from it, and still lists the cell's lines
    write(folder, ["%matplotlib inline\nx = 1\nraise RuntimeError('after the magic')"])
    found, summary = cached(folder)
    assert "after the magic" in str(summary.error)
    assert found == plain(folder)


SHOWN = [
    "!echo a shell cell, so that every run starts the kernel",
    "from IPython.display import clear_output, display, update_display\n"
    "h = display('first', display_id=True)\nv = 1",
    "h.update('second')\nw = v + 1",
    "display('mine', display_id='fixed')\nupdate_display('updated', display_id='fixed')\nx = w",
    "print('gone')\nclear_output()\nprint('kept')\nq = x",
    "print('shown')\nclear_output(wait=True)\ns = q",
    "print('replaced')\nclear_output(wait=True)\nprint('after the wait')\nt = s",
    "t + 1",
]


def test_displays_updated_or_cleared_restore_as_a_plain_run_shows_them(folder: Path) -> None:
    """A display with an id is shown, and updated from a later cell; what a cell cleared
    is not shown again: in the first run, and restored in one batch."""
    write(folder, SHOWN)
    expected = plain(folder)
    assert expected[1][1][0]["data"] == {"text/plain": "'second'"}  # updated by cell 2
    first, _ = cached(folder)
    assert first == expected
    again, summary = cached(folder)
    assert [c.outcome for c in summary.cells] == ["uncached"] + ["restored"] * 7
    assert again == expected


def test_a_notebook_of_nbformat_4_4_is_written_as_4_4_without_cell_ids(folder: Path) -> None:
    """Cells of nbformat before 4.5 have no ids, and its schema refuses them: the ids the
    run names cells by stay out of the executed notebook, which Jupyter would otherwise
    refuse to open as valid (a plain run writes a 4.4 notebook as it read it)."""
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = 4
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "p", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in ("x = 1", "", "y = x + 1\ny")]
    for cell in nb.cells:
        del cell["id"]
    (folder / "nb.ipynb").write_text(json.dumps(nb))
    for out in ("first.ipynb", "again.ipynb"):  # the second with no kernel
        _, summary = cached(folder, out)
        written = nbformat.read(folder / out, as_version=nbformat.NO_CONVERT)
        assert written.nbformat_minor == 4, summary.line()
        assert not any("id" in cell for cell in written.cells)
        nbformat.validate(written)
        assert written.cells[2].outputs[0]["data"] == {"text/plain": "2"}
        assert written.cells[2].metadata["nbcache"]["outcome"] in ("ran", "restored")
    assert "no kernel started" in summary.line()
