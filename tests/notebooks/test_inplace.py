"""A notebook run in place keeps its bytes when only timing metadata changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nbcache.notebooks.inplace import keep_if_unchanged, read_bytes


def notebook(text: str, when: str) -> bytes:
    cell = {
        "cell_type": "code",
        "id": "a",
        "metadata": {"execution": {"iopub.execute_input": when}, "tags": []},
        "source": "print(1)",
        "execution_count": 1,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": text}],
    }
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}).encode()


def test_only_new_timestamps_leave_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    before = notebook("1\n", "2026-01-01T00:00:00Z")
    path.write_bytes(notebook("1\n", "2026-01-02T00:00:00Z"))
    assert keep_if_unchanged(path, before)
    assert path.read_bytes() == before


def test_a_new_output_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    after = notebook("2\n", "2026-01-02T00:00:00Z")
    path.write_bytes(after)
    assert not keep_if_unchanged(path, notebook("1\n", "2026-01-01T00:00:00Z"))
    assert not keep_if_unchanged(path, b"not json")
    assert path.read_bytes() == after


def test_what_is_no_regular_file_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.ipynb")  # opening it would block until a writer came
    assert read_bytes(tmp_path / "pipe.ipynb") is None
    assert read_bytes(tmp_path / "missing.ipynb") is None
