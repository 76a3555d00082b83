"""Files `nbcache run` and `nbcache run --plan` are given that are no notebook nbformat
reads: each is one line naming the file, exit status 2, no traceback and no kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbcache.__main__ import main

CELL = '{"cell_type": "code", "source": %s, "metadata": {}, "outputs": []}'
FILES = {
    "not-json": b"not json",
    "not-utf8": b'{"cells": [], "metadata": {"x": "\xff\xfe"}, "nbformat": 4, "nbformat_minor": 5}',
    "a-list": b"[1, 2]",
    "cells-an-int": b'{"cells": 5, "nbformat": 4}',
    "no-cells": b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}',
    "source-an-int": (
        '{"cells": [%s], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}' % (CELL % "5")
    ).encode(),
    "version-3-without-worksheets": b'{"cells": [], "nbformat": 3, "metadata": {}}',
}


@pytest.mark.parametrize("plan", [True, False], ids=["plan", "run"])
@pytest.mark.parametrize("name", list(FILES))
def test_a_file_that_is_no_notebook_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, plan: bool
) -> None:
    path = tmp_path / f"{name}.ipynb"
    path.write_bytes(FILES[name])
    args = ["run", *(["--plan"] if plan else []), str(path), "-o", str(tmp_path / "out.ipynb")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{name}.ipynb is not a notebook" in err, err
    assert "Traceback" not in err and not (tmp_path / "out.ipynb").exists()


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", id="a")]
    nbformat.write(nb, path)


@pytest.mark.parametrize("where", ["a-folder", "in-a-missing-folder"])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_kernel(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Not after the whole run, whose executed notebook it would then lose."""
    from nbcache.notebooks import runner

    started: list[object] = []
    monkeypatch.setattr(runner, "execute", lambda *a, **k: started.append(a))
    _notebook(tmp_path / "nb.ipynb")
    out = tmp_path / "out" if where == "a-folder" else tmp_path / "missing" / "out.ipynb"
    if where == "a-folder":
        out.mkdir()
    assert main(["run", str(tmp_path / "nb.ipynb"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"-o {out}" in err, err
    assert started == []
