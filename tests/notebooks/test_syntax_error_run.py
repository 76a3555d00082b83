"""``nbcache run`` of a notebook with a cell that does not parse: the run stops there with
the error ``jupyter execute`` shows, IPython's own SyntaxError at the user's line, with
no nbcache frames."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.notebooks.nbrun import errors, traceback_text

_JUPYTER_EXECUTE = [sys.executable, "-m", "jupyter", "execute"]
CELLS = ["x = 1", "x = 2\ny = (x +\n", "z = 3"]


def _write(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, path)


def _error(path: Path) -> tuple[str, str]:
    (found,) = errors(nbformat.read(path, as_version=4))
    text = re.sub(r"In\[\d+\]", "In[n]", traceback_text(found))
    return found.ename, text


def test_a_cell_that_does_not_parse_fails_as_in_jupyter_execute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "store"))
    _write(tmp_path / "nb.ipynb")
    plain = subprocess.run(
        # with --allow-errors, so that the executed notebook is written
        [*_JUPYTER_EXECUTE, "nb.ipynb", "--allow-errors", "--output=plain.ipynb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode == 0, plain.stderr
    run = subprocess.run(
        [sys.executable, "-m", "nbcache", "run", "nb.ipynb", "-o", "out.ipynb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    ename, shown = _error(tmp_path / "out.ipynb")
    assert (ename, shown) == _error(tmp_path / "plain.ipynb")
    assert ename == "SyntaxError" and "line 2" in shown
    assert "nbcache" not in shown and "run_cell_magic" not in shown
