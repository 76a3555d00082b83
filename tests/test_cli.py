"""``python -m nbcache`` and ``%nbcache`` on empty targets, broken folders and stray files:
one line and a non-zero exit code, never a traceback, never a wiped store."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcache import Cache
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore

SECRET = "cli-tests-secret-0123456789abcdef"
SCRIPT = Path(sys.executable).with_name("nbcache")


def _env(store: Path) -> dict[str, str]:
    return {**os.environ, "NBCACHE_DIR": str(store), "NBCACHE_SECRET": SECRET}


def _run(
    *args: str, store: Path, program: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = program or [sys.executable, "-m", "nbcache"]
    return subprocess.run(
        [*command, *args], env=_env(store), capture_output=True, text=True, timeout=120
    )


def _filled(store: Path, count: int = 3) -> Cache:
    cache = Cache(LocalStore(store), signer=Signer(SECRET.encode()))
    for n in range(count):
        cache.put(f"{n + 1:032x}", n, {"label": f"entry {n}"})
    return cache


def _entries(store: Path) -> int:
    return len(list(LocalStore(store).entries()))


@pytest.mark.parametrize("target", ["", "   "])
def test_an_empty_clear_target_is_a_usage_error(tmp_path: Path, target: str) -> None:
    """`clear ""` (an empty shell variable) removes nothing and says what to give."""
    store = tmp_path / "store"
    _filled(store)
    done = _run("clear", target, store=store)
    assert done.returncode == 2 and "--all" in done.stderr, done
    assert "Traceback" not in done.stderr
    assert _entries(store) == 3


def test_help_is_plain_text_and_names_the_command_as_typed(tmp_path: Path) -> None:
    """No reStructuredText in --help; `python -m nbcache` or `nbcache`, as it was run."""
    as_module = _run("--help", store=tmp_path)
    assert as_module.returncode == 0 and "``" not in as_module.stdout
    assert as_module.stdout.startswith("usage: python -m nbcache")
    if SCRIPT.exists():
        as_script = _run("--help", store=tmp_path, program=[str(SCRIPT)])
        assert as_script.stdout.startswith("usage: nbcache ") and "``" not in as_script.stdout


@pytest.mark.parametrize("command", ["list", "info", "clear --all", "prune", "check"])
def test_a_dir_that_is_a_file_is_one_line_and_an_error_code(tmp_path: Path, command: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    done = _run(*command.split(), store=tmp_path / "file")
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "is a file" in done.stderr


def test_stray_files_do_not_break_list_or_clear(tmp_path: Path) -> None:
    """A .DS_Store and notes in a shard: list and clear --all work and leave them."""
    store = tmp_path / "store"
    _filled(store)
    shard = store / "v1" / "entries" / "00"
    (shard / ".DS_Store").write_bytes(b"\0\1\2")
    (shard / "notes.txt").write_text("mine")
    (store / "v1" / "index.sqlite").unlink()  # rebuilt from the folder, strays and all
    listing = _run("list", store=store)
    assert listing.returncode == 0 and "entry 2" in listing.stdout, listing
    cleared = _run("clear", "--all", store=store)
    assert cleared.returncode == 0 and "removed 3" in cleared.stdout, cleared
    assert (shard / "notes.txt").read_text() == "mine"


def test_check_rebuilds_the_index(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _filled(store)
    done = _run("check", store=store)
    assert done.returncode == 0 and "indexed 3 entries" in done.stdout, done


@pytest.mark.parametrize("line", ["clear ''", 'clear ""', "clear '  '"])
def test_percent_nbcache_clear_with_an_empty_target_removes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv("NBCACHE_DIR", str(store))
    monkeypatch.setenv("NBCACHE_SECRET", SECRET)
    _filled(store)
    monkeypatch.chdir(tmp_path)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcache")
    try:
        with pytest.raises(UsageError, match="--all"):
            shell.run_line_magic("nbcache", line)
    finally:
        shell.run_line_magic("unload_ext", "nbcache")
        shell.atexit_operations()
        atexit.unregister(shell.atexit_operations)
        InteractiveShell.clear_instance()
    assert _entries(store) == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [("NBCACHE_MAX_SIZE", "lots"), ("NBCACHE_FSYNC", "maybe"), ("NBCACHE_DIR", "gopher://x/y")],
)
def test_an_unusable_setting_is_one_line_and_an_error_code(
    tmp_path: Path, name: str, value: str
) -> None:
    """A setting the CLI cannot use is answered, not silently replaced by its default."""
    store = tmp_path / "store"
    _filled(store)
    done = subprocess.run(
        [sys.executable, "-m", "nbcache", "list"],
        env={**_env(store), name: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done
    (line,) = done.stderr.strip().splitlines()
    assert name in line or value in line, line
