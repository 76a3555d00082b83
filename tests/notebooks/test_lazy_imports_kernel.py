"""``nbcache run`` in a real kernel: after an edit, a module an import cell restored is
imported only once a cell that runs needs it, and then it is the module itself."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.notebooks.test_nbcache_run import nbcache_run, write_notebook

SLOW = "__import__('time').sleep(0.02)\n"
# What is loaded, read through getattr: a cell that names ``sys.modules`` may reach any
# module through it, so nbcache imports everything before it runs.
LOADED = "import sys\n"
IN = "getattr(sys, 'modules')"
CELLS = [
    "import scipy.stats as st\nimport json",
    SLOW + "a = list(range(10))",
    SLOW + LOADED + f"print('scipy' in {IN}, len(a))",
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "store"))
    return tmp_path


def _printed(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [
        "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


def _edit(path: Path, source: str, *more: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source = source  # the last cell, its id kept, as an editor saves it
    nb.cells += [nbformat.v4.new_code_cell(cell) for cell in more]
    nbformat.write(nb, path)


def test_an_edited_last_cell_leaves_an_unused_import_unimported(folder: Path) -> None:
    write_notebook(folder / "nb.ipynb", CELLS)
    first = nbcache_run(folder, "nb.ipynb")
    assert first.returncode == 0, first.stderr
    assert _printed(folder / "nb.ipynb")[-1] == "True 10\n"  # a plain run's
    _edit(folder / "nb.ipynb", SLOW + LOADED + f"print('scipy' in {IN}, len(a) + 1)")
    edited = nbcache_run(folder, "nb.ipynb")
    assert edited.returncode == 0, edited.stderr
    assert "3 code cells, 2 restored, 1 ran" in edited.stdout
    assert _printed(folder / "nb.ipynb")[-1] == "False 11\n"


def test_a_cell_that_uses_the_module_gets_it(folder: Path) -> None:
    write_notebook(folder / "nb.ipynb", CELLS)
    assert nbcache_run(folder, "nb.ipynb").returncode == 0
    _edit(
        folder / "nb.ipynb",
        SLOW + "print(len(a))",
        LOADED + f"print(st is {IN}['scipy.stats'], st.norm.cdf(0))",
    )
    edited = nbcache_run(folder, "nb.ipynb")
    assert edited.returncode == 0, edited.stderr
    assert _printed(folder / "nb.ipynb")[-2:] == ["10\n", "True 0.5\n"]
