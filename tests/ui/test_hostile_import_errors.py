"""A cell that imports a module that is not installed fails as it would without nbcache:
its traceback shows the user's line and no frame of nbcache's own (the import hook that
watches what a cell's imports change included)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.shells import close_shell, new_shell

_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[InteractiveShell]:
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


@pytest.mark.parametrize("how", ["%%cache\n", "auto"])
@pytest.mark.parametrize(
    "cell", ["import not_a_module_anywhere", "from not_a_module_anywhere import x"]
)
def test_a_missing_module_shows_no_nbcache_frame(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], how: str, cell: str
) -> None:
    if how == "auto":
        shell.run_line_magic("nbcache", "auto")
    capsys.readouterr()
    result = shell.run_cell(("" if how == "auto" else how) + cell)  # type: ignore[no-untyped-call]
    out = capsys.readouterr()
    shown = _ESCAPES.sub("", out.out + out.err)
    assert isinstance(result.error_in_exec, ModuleNotFoundError)
    assert "not_a_module_anywhere" in shown
    assert "nbcache" not in shown and "modstate" not in shown, shown
