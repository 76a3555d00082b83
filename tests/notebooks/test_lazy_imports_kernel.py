"""``nbcache run`` in a real kernel: a module an import cell restored is imported only
once a cell runs, with every other import a plain run made before that cell, and then it
is the module itself; a library whose import registers into pandas is among them."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

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


def test_an_edited_last_cell_sees_the_modules_a_plain_run_imported(folder: Path) -> None:
    write_notebook(folder / "nb.ipynb", CELLS)
    first = nbcache_run(folder, "nb.ipynb")
    assert first.returncode == 0, first.stderr
    assert _printed(folder / "nb.ipynb")[-1] == "True 10\n"  # a plain run's
    _edit(folder / "nb.ipynb", SLOW + LOADED + f"print('scipy' in {IN}, len(a) + 1)")
    edited = nbcache_run(folder, "nb.ipynb")
    assert edited.returncode == 0, edited.stderr
    assert "3 code cells, 2 restored, 1 ran" in edited.stdout
    assert _printed(folder / "nb.ipynb")[-1] == "True 11\n"  # a plain run's


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


# Installed libraries as far as nbcache can tell (their files under a site-packages):
# importing one registers an accessor on pandas' DataFrame, as pandas_flavor's and
# hvplot.pandas' imports do.
ACCESSOR = """import pandas as pd

print({name!r}, "registered")  # shown by the import cell, in a plain run as in a restore

@pd.api.extensions.register_dataframe_accessor({name!r})
class Accessor:
    def __init__(self, df):
        self.df = df

    def __call__(self):
        return {name!r} + ":" + str(int(self.df.to_numpy().sum()))
"""
REGISTERING = [
    "import fake_ext\nimport fake_plot.pandas\nimport pandas as pd",
    SLOW + "df = pd.DataFrame({'a': [1, 2, 3]})",
    SLOW + "print(len(df))",
]


def _plain(path: Path) -> list[str]:
    """The last cell's printed text when the notebook runs without nbcache."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(path.parent)}}).execute()
    plain = path.with_name("plain.ipynb")
    nbformat.write(nb, plain)
    return _printed(plain)


def test_a_library_that_registers_into_pandas_is_imported_before_a_cell_runs(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = folder / "lib" / "site-packages"
    (lib / "fake_plot").mkdir(parents=True)
    (lib / "fake_ext.py").write_text(ACCESSOR.format(name="fake"))
    (lib / "fake_plot" / "__init__.py").write_text("")
    (lib / "fake_plot" / "pandas.py").write_text(ACCESSOR.format(name="fakeplot"))
    paths = [str(lib), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    work = folder / "work"
    work.mkdir()
    write_notebook(work / "nb.ipynb", REGISTERING)
    first = nbcache_run(work, "nb.ipynb")
    assert first.returncode == 0, first.stderr
    _edit(work / "nb.ipynb", SLOW + "print(df.fake(), df.fakeplot())")
    edited = nbcache_run(work, "nb.ipynb")
    assert edited.returncode == 0, edited.stderr
    assert "3 code cells, 2 restored, 1 ran" in edited.stdout
    assert _printed(work / "nb.ipynb")[-1] == "fake:6 fakeplot:6\n"
    assert _printed(work / "nb.ipynb") == _plain(work / "nb.ipynb")


def test_a_cell_ipython_runs_itself_sees_what_a_plain_run_has(folder: Path) -> None:
    """A ``%%time`` cell is left to IPython: it may read any name, so every value and
    every import restored cells left waiting is loaded before it runs."""
    cells = [*CELLS[:2], "%%time\n" + LOADED + f"print('scipy' in {IN}, len(a))"]
    write_notebook(folder / "nb.ipynb", cells)
    assert nbcache_run(folder, "nb.ipynb").returncode == 0
    again = nbcache_run(folder, "nb.ipynb")
    assert again.returncode == 0, again.stderr
    assert "3 code cells, 2 restored, 1 ran" in again.stdout
    assert _printed(folder / "nb.ipynb")[-1].startswith("True 10\n")


def test_a_drawing_cell_restores_with_pyplot_waiting(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A figure's entry holds matplotlib's settings as they were; importing pyplot in a
    kernel set some of them (the inline backend's). With that import waiting, the check
    of the settings makes it first, as a plain run had by then, instead of missing."""
    cells = ["import matplotlib.pyplot as plt", SLOW + "fig, ax = plt.subplots()\nax.plot([1, 2])"]
    write_notebook(folder / "nb.ipynb", cells)
    assert nbcache_run(folder, "nb.ipynb").returncode == 0
    monkeypatch.setenv("NBCACHE_TEST_KERNEL", "again")  # no notebook-level hit: a kernel
    plan = nbcache_run(folder, "--plan", "nb.ipynb")
    assert plan.returncode == 0, plan.stderr
    assert "2 code cells: " in plan.stdout and ", 0 run" in plan.stdout, plan.stdout
    again = nbcache_run(folder, "nb.ipynb")
    assert again.returncode == 0, again.stderr
    assert "2 code cells, 2 restored" in again.stdout, again.stdout + again.stderr
