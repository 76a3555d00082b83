"""The notebook-level hit of ``nbcache run`` under a careless user: a timed cell whose
expression reads or writes files, a kernelspec whose environment changed, an output
path that cannot be written. Each must start the kernel (or refuse before it), never
write outputs a plain run would not give."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from nbcache.notebooks.unchanged import record_key

from .clients import write_notebook
from .test_unchanged_notebook import Runs, folder, text

__all__ = ["folder"]  # the fixture, shared with the notebook-level hit's own tests


def test_a_timed_expression_that_reads_a_file_starts_the_kernel_once_it_changed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`%time f()` shows f()'s value, not only a measurement: what it read is an input."""
    cells = [("a", "x = 1"), ("timed", "%time open('data.txt').read()")]
    write_notebook(folder / "nb.ipynb", cells)
    runs = Runs(folder, monkeypatch)
    assert runs.run("out.ipynb")[1]
    (folder / "data.txt").write_text("changed")
    runs.run("out.ipynb")
    nb = nbformat.read(folder / "out.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if c.get("id") == "timed"]
    shown = json.dumps(cell.outputs)
    assert "changed" in shown and "'abc'" not in shown, shown


def test_a_timed_expression_that_writes_a_file_writes_it_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no kernel nothing would write the file a plain run writes."""
    cells = [("a", "x = 1"), ("timed", "%timeit open('made.txt', 'w').write('x')")]
    write_notebook(folder / "nb.ipynb", cells)
    runs = Runs(folder, monkeypatch)
    assert runs.run("out.ipynb")[1]
    (folder / "made.txt").unlink()
    runs.run("out.ipynb")
    assert (folder / "made.txt").read_text() == "x"


def test_a_timed_pure_expression_still_needs_no_kernel(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cells = [("a", "x = 1"), ("timed", "%timeit x + 1"), ("shown", "print(x)")]
    write_notebook(folder / "nb.ipynb", cells)
    runs = Runs(folder, monkeypatch)
    assert runs.run("out.ipynb")[1]
    assert not runs.run("out.ipynb")[1]
    assert text(folder / "out.ipynb", "shown") == "1\n"


def _kernelspec(root: Path, env: dict[str, str]) -> None:
    import sys

    spec = root / "jupyter-data" / "kernels" / "shaped"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "shaped", "language": "python", "env": env})
    )


def test_a_kernelspec_whose_environment_changed_is_another_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernelspec's `env` (a PYTHONPATH, a data folder) shapes what its kernel imports
    and computes as much as its command does."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import helper", id="a")]
    _kernelspec(tmp_path, {"PYTHONPATH": str(tmp_path / "v1")})
    before = record_key(nb, tmp_path, {}, "shaped")
    _kernelspec(tmp_path, {"PYTHONPATH": str(tmp_path / "v2")})
    after = record_key(nb, tmp_path, {}, "shaped")
    assert before is not None and after is not None and before != after
