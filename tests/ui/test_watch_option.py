"""``%%cache --watch PATH``: a path that is not there is refused before the cell runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from tests.shells import close_shell, new_shell


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


def test_watch_refuses_a_missing_path_in_one_line(ip: InteractiveShell, tmp_path: Path) -> None:
    """A typo in a watched file's name is one line that names it; the body does not run
    and nothing is stored."""
    (tmp_path / "data.csv").write_text("1,2\n")
    with capture_output() as out:
        result = ip.run_cell("%%cache --watch data.csv dta.csv\nran = True\n")  # type: ignore[no-untyped-call]
    assert result.error_before_exec is not None or result.error_in_exec is not None
    assert "ran" not in ip.user_ns
    told = (out.stdout + out.stderr).strip().splitlines()
    assert len(told) == 1, told
    assert "dta.csv" in told[0] and "no such file" in told[0]
    assert "Traceback" not in out.stdout + out.stderr


def test_watch_takes_files_and_folders_that_exist(ip: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2\n")
    (tmp_path / "raw").mkdir()
    result = ip.run_cell("%%cache -q --watch data.csv raw\nran = True\n")  # type: ignore[no-untyped-call]
    assert result.success and ip.user_ns["ran"] is True
