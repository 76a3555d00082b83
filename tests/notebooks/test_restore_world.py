"""A notebook whose cells do more than bind names gives the same outputs, cell by cell,
in a plain run, in ``nbcache run`` (twice, on a fresh checkout of the files, then after
an edit of a later cell) and under ``%%cache`` after a restart.

Its first cell configures libraries (print options, pandas, warnings, the recursion
limit, decimal, logging), then cells change a module's state, the working directory
and write a file, and a later cell, which runs every time (it calls a line magic),
shows all of it;
later cells change a list through a name that shares it, and a module beside the
notebook reads the notebook's namespace through ``__main__``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.run.test_effects import Kernels

MARK = "open(LOG, 'a').write('{}\\n')\n"
SLOW = "__import__('time').sleep(0.02)\n"  # worth storing
CELLS = [
    "import decimal, logging, os, sys, warnings\nimport numpy as np, pandas as pd\n"
    "import helper, mymod\nLOG = os.path.abspath('runs.log')\n"
    + SLOW
    + MARK.format("configure")
    + "np.set_printoptions(precision=2)\npd.set_option('display.max_columns', 3)\n"
    "warnings.simplefilter('ignore')\nsys.setrecursionlimit(4321)\n"
    "decimal.getcontext().prec = 5\n"
    "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')",
    SLOW + MARK.format("module") + "mymod.CONFIG['x'] = 1",
    SLOW + MARK.format("chdir") + "os.chdir('data')\nstep = 2",
    SLOW + MARK.format("write") + "with open('out.txt', 'w') as f:\n"
    "    f.write('written by a cell')\nn = 3",
    "%precision %r\nprint(np.array([1 / 3, 2 / 3]))\nprint(pd.DataFrame([[1, 2, 3, 4, 5]]))\n"
    "warnings.warn('shown only if the filter was lost')\n"
    "print(sys.getrecursionlimit(), decimal.Decimal(1) / 7)\nlogging.info('logged')\n"
    "print(mymod.CONFIG)\nprint(open('table.txt').read(), open('out.txt').read())\n"
    "print(os.path.basename(os.getcwd()))",
    SLOW + MARK.format("dict") + "d = {'k': [1]}",
    SLOW + MARK.format("inner") + "inner = d['k']",
    SLOW + MARK.format("append") + "inner.append(2)",
    # a module beside the notebook that reads the notebook's namespace itself
    "print(helper.keys())",
    "print(d)",
    # a scikit-learn transformer of the notebook's: the library wraps its transform
    SLOW + MARK.format("class") + "from sklearn.base import BaseEstimator, TransformerMixin\n"
    "class Rescale(TransformerMixin, BaseEstimator):\n"
    "    def fit(self, X, y=None):\n        self.m_ = np.max(X)\n        return self\n"
    "    def transform(self, X):\n        return np.asarray(X) / self.m_",
    SLOW + MARK.format("fit") + "scaler = Rescale().fit([1.0, 2.0, 4.0])",
    "print(scaler.transform([2.0, 4.0]))",
    SLOW + MARK.format("total") + "total = n + step\nprint('total', total)",
]
# the edited cell runs and changes the list through one name: the other shows it
EDITED = (
    CELLS[-1].replace("n + step", "n * step")
    + "\ninner.append(3)\nprint(d)\nprint(scaler.transform([2.0, 4.0]))"
)


def write(folder: Path, cells: list[str], name: str = "nb.ipynb") -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(src, id=f"cell-{i}") for i, src in enumerate(cells)]
    nbformat.write(nb, folder / name)


def checkout(folder: Path) -> None:
    """The files a checkout has: the module and the data, nothing a run wrote (files a
    cell reads are left as they are: a changed modification time is a miss)."""
    if not (folder / "mymod.py").exists():
        (folder / "mymod.py").write_text("CONFIG = {}\n")
        (folder / "helper.py").write_text(
            "import __main__\n\ndef keys():\n    return sorted(__main__.d)\n"
        )
        (folder / "data").mkdir()
        (folder / "data" / "table.txt").write_text("1 2 3")
    (folder / "data" / "out.txt").unlink(missing_ok=True)
    (folder / "runs.log").unlink(missing_ok=True)


def ran(folder: Path) -> list[str]:
    log = folder / "runs.log"
    return log.read_text().split() if log.exists() else []


def shown(path: Path) -> list[list[str]]:
    """What each cell shows, as a reader sees it (no counts, no timings, no ids). Each
    stream's text is joined: how a kernel interleaves stdout and stderr depends on
    when it flushes them, which is no part of what a cell computed."""
    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in nb.cells:
        streams = {"stdout": "", "stderr": ""}
        merged: list[str] = []
        for output in cell.outputs:
            output = dict(output)
            if output.get("output_type") == "stream":
                streams[output["name"]] += output["text"]
                continue
            output.pop("execution_count", None)
            output.pop("metadata", None)
            merged.append(json.dumps(output, sort_keys=True))
        out.append([f"{k}: {v}" for k, v in streams.items() if v] + merged)
    return out


def command(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=folder, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("NBCACHE_AUTO_MIN_SECONDS", "0.01")  # SLOW cells stored, the rest not
    return tmp_path


def plain(folder: Path, cells: list[str], name: str) -> list[list[str]]:
    write(folder, cells, "plain-in.ipynb")
    checkout(folder)
    done = command(folder, "jupyter", "execute", "plain-in.ipynb", f"--output={name}")
    assert done.returncode == 0, done.stderr
    return shown(folder / name)


def test_nbcache_run_restores_the_world_a_plain_run_makes(folder: Path) -> None:
    expected = plain(folder, CELLS, "plain.ipynb")
    text = "".join(expected[4])
    assert "[0.33 0.67]" in text and "4321 0.14286" in text and "INFO logged" in text
    assert "{'x': 1}" in text and "written by a cell" in text and "Warning" not in text

    write(folder, CELLS)
    checkout(folder)
    first = command(folder, "nbcache", "run", "nb.ipynb", "-o", "first.ipynb")
    assert first.returncode == 0, first.stderr
    assert shown(folder / "first.ipynb") == expected

    checkout(folder)  # a fresh checkout, the store kept: out.txt is gone
    second = command(folder, "nbcache", "run", "nb.ipynb", "-o", "second.ipynb")
    assert second.returncode == 0, second.stderr
    # only the cell that changes a module's state runs (and the one that calls a magic)
    assert ran(folder) == ["module"]
    assert shown(folder / "second.ipynb") == expected

    write(folder, [*CELLS[:-1], EDITED])
    checkout(folder)
    edited = command(folder, "nbcache", "run", "nb.ipynb", "-o", "edited.ipynb")
    assert edited.returncode == 0, edited.stderr
    assert ran(folder) == ["module", "total"]
    assert shown(folder / "edited.ipynb") == plain(folder, [*CELLS[:-1], EDITED], "plain2.ipynb")


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernels]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])  # put back after
    runs = Kernels(tmp_path)
    yield runs
    runs.close()
    runs.reset()


def test_cache_cells_restore_the_world_after_a_restart(
    kernels: Kernels, capsys: pytest.CaptureFixture[str]
) -> None:
    def session() -> list[str]:
        checkout(kernels.root)
        shell = kernels.restart()
        sys.modules["__main__"] = shell.user_module  # as in a kernel
        sys.modules.pop("helper", None)
        out = []
        for cell in CELLS:
            # the cells that show the world run as plain cells, every time
            source = cell if cell.startswith(("print(", "%")) else "%%cache\n" + cell
            capsys.readouterr()
            kernels.run(source)
            captured = capsys.readouterr()
            out.append(
                "\n".join(
                    line
                    for line in (captured.out + captured.err).splitlines()
                    if not line.startswith("nbcache:")
                )
            )
        return out

    first = session()
    assert "[0.33 0.67]" in first[4] and "{'x': 1}" in first[4] and "4321 0.14286" in first[4]
    assert "['k']" in first[8] and "{'k': [1, 2]}" in first[9]
    assert ran(kernels.root) == [
        *("configure", "module", "chdir", "write", "dict", "inner", "append"),
        *("class", "fit", "total"),
    ]
    logging_out = _logged(kernels)
    second = session()
    assert ran(kernels.root) == ["module"]
    assert second == first
    assert _logged(kernels) == logging_out


def _logged(kernels: Kernels) -> Any:
    import logging

    return [(type(h).__name__, h.level) for h in logging.root.handlers[len(kernels.handlers) :]]
