"""The README's synopses and `python -m nbcache --help` name every option and command the
code has, so a reader finds `-b` or `%nbcache wait` without reading the source; the quick
start's main job runs without pages of installer output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block_after(heading: str, starts: str) -> str:
    """The first fenced block under ``heading`` whose text starts with ``starts``."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.S)
    return next(block for block in blocks if block.startswith(starts))


def test_cache_synopsis_names_every_option() -> None:
    pytest.importorskip("IPython")
    from nbcache.ui.magics import NbcacheMagics

    parser = NbcacheMagics.cache.parser  # type: ignore[attr-defined]
    synopsis = _block_after("`%%cache`", "%%cache")
    for action in parser._actions:
        if action.help == "==SUPPRESS==" or not action.option_strings:
            continue
        assert any(option in synopsis for option in action.option_strings), action.option_strings


def test_nbcache_synopsis_names_every_command() -> None:
    pytest.importorskip("IPython")
    from nbcache.ui import magics

    # the commands are the subparsers the magic's parser builds
    commands = set(re.findall(r"add_parser\(\"(\w+)\"", Path(magics.__file__).read_text()))
    assert {"why", "auto", "plan", "tasks", "wait"} <= commands
    synopsis = _block_after("`%%cache`", "%nbcache")
    for command in commands:
        assert re.search(rf"\b{command}\b", synopsis), command


@pytest.mark.processes  # the CLI in a Python process of its own
def test_help_names_every_command() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "nbcache", "--help"], capture_output=True, text=True, check=True
    ).stdout
    description = shown.split("\n\n", 1)[1].split("positional arguments", 1)[0]
    choices = re.search(r"\{([a-z,]+)\}", shown)
    assert choices is not None
    for command in choices.group(1).split(","):
        assert re.search(rf"\b{command}\b", description), command


def test_main_job_installs_quietly_on_one_line() -> None:
    """.ci/run reads the line after "# the main job:"; pip's progress would bury the
    tutorial's own output."""
    lines = README.splitlines()
    command = lines[lines.index(next(x for x in lines if x.startswith("# the main job:"))) + 1]
    assert "pip install -q " in command and "nbcache tutorial" in command


def test_performance_targets_say_what_they_are() -> None:
    """A target is named by what it asks, never by where it was asked for."""
    assert "issue" not in README.lower()
    performance = README.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    assert "target" in performance.split("| what |", 1)[0]  # the column is explained first
