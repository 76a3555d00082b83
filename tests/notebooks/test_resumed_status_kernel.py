"""In a real kernel run by nbclient, a cell that resumes at a checkpoint leaves one
status line in the notebook: where it resumed, replaced by how it ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebooks import nbrun
from tests.notebooks.nbrun import kernel_env

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

LOOP = """\
%%cache -n resumable --checkpoint 0s
import os, time
from nbcache import progress
total = 0
for i in progress(range(12)):
    total += i
    time.sleep(0.02)
    if i == int(os.environ.get("FAIL_AT", "-1")):
        raise ValueError(f"failed at {i}")
"""


def test_a_resumed_cell_leaves_one_status_line(tmp_path: Path) -> None:
    nb = nbrun.run(
        [
            "%load_ext nbcache\nimport os\nos.environ['FAIL_AT'] = '7'",
            LOOP,
            "del os.environ['FAIL_AT']",
            LOOP,
            "print(total)",
        ],
        cwd=tmp_path,
        env=kernel_env(tmp_path, tmp_path / "store"),
        allow_errors=True,
    )
    assert [e.evalue for e in nbrun.errors(nb)] == ["failed at 7"]
    (line,) = nbrun.status_lines(nb, 3)
    assert line.startswith("nbcache: computed total") and "resumed at step " in line, line
    assert nbrun.text_of(nb, 4).strip() == str(sum(range(12)))
