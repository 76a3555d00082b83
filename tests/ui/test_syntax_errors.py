"""A cell that does not parse shows IPython's own SyntaxError, at the user's line, with no
nbcache frames: under auto mode exactly as without nbcache, under ``%%cache`` as the
same code at the same lines would; and the cell counts as failed before it ran. A
runtime error under auto mode names the user's line too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.shells import close_shell, new_shell

_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")

BROKEN = [
    "x = 1\ny = (\n",  # incomplete input
    "x = 1\n  y = 2\n",  # unexpected indent
    "x = 1\nif x\n    y = 2\n",  # invalid syntax
    "%time x = 1\ny = 1 +\n",  # IPython syntax before the error
]


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[InteractiveShell]:
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


def _shown(shell: InteractiveShell, cell: str, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    result = shell.run_cell(cell, store_history=True)  # type: ignore[no-untyped-call]
    out = capsys.readouterr()
    return result, _ESCAPES.sub("", out.out + out.err)


def _numbered(text: str) -> str:
    """The output with the cell's number left out (each run is a cell of its own)."""
    return re.sub(r"In\[\d+\]", "In[n]", text)


@pytest.mark.parametrize("cell", BROKEN)
def test_auto_mode_shows_the_plain_syntax_error(
    shell: InteractiveShell, cell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, expected = _shown(shell, cell, capsys)
    shell.run_line_magic("nbcache", "auto")
    result, shown = _shown(shell, cell, capsys)
    assert _numbered(shown) == _numbered(expected), shown
    assert "nbcache" not in shown and "Traceback" not in shown
    assert isinstance(result.error_before_exec, SyntaxError)
    assert type(result.error_before_exec) is type(plain.error_before_exec)


@pytest.mark.parametrize("cell", BROKEN)
def test_cache_shows_the_plain_syntax_error_at_the_cells_line(
    shell: InteractiveShell, cell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under %%cache the body starts on line 2: the same as a plain cell with one line
    more above the code."""
    plain, expected = _shown(shell, "pass\n" + cell, capsys)
    result, shown = _shown(shell, "%%cache\n" + cell, capsys)
    assert _numbered(shown) == _numbered(expected), shown
    assert "nbcache" not in shown and "Traceback" not in shown
    assert type(result.error_before_exec) is type(plain.error_before_exec)
    assert result.error_in_exec is None  # nothing ran


def test_a_cell_that_parses_still_caches(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checking the body costs nothing else: the cell caches and restores as before."""
    for _ in range(2):
        result, _ = _shown(shell, "%%cache\nvalue = sum(range(10))\n", capsys)
        assert result.success
    assert shell.user_ns["value"] == 45
    shell.run_line_magic("nbcache", "auto")
    result, _ = _shown(shell, "other = value + 1\n", capsys)
    assert result.success and shell.user_ns["other"] == 46


def test_a_runtime_error_under_auto_mode_names_the_users_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("nbcache", "auto")
    _, shown = _shown(shell, "x = 1\n1 / 0\n", capsys)
    assert re.search(r"Cell In\[\d+\], line 2\n\s+1 x = 1\n----> 2 1 / 0", shown), shown
