"""nbcache in a real terminal IPython, typed into through a pseudo-terminal: auto mode
leaves input as IPython reads it, and a background cell's output shows as it comes,
never over the prompt, and is recorded into its entry. Both prompts: prompt_toolkit's
and ``--simple-prompt``."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect")

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_WAIT = 60  # seconds any one expected line may take on a loaded machine


def _ipython(tmp_path: Path, prompt: str) -> Any:
    env = {
        **os.environ,
        "NBCACHE_DIR": str(tmp_path / "store"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "TERM": "xterm",
        "NBCACHE_WIDGETS": "0",
    }
    args = ["-m", "IPython", "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False"]
    if prompt == "simple":
        args.append("--simple-prompt")
    child = pexpect.spawn(
        sys.executable,
        args,
        env=env,
        cwd=str(tmp_path),
        timeout=_WAIT,
        encoding="utf-8",
        dimensions=(40, 240),
    )

    def expect_prompt(number: int) -> None:
        colour = r"(?:\x1b\[[0-9;]*m)*"  # prompt_toolkit may colour the number apart
        child.expect(rf"In \[{colour}{number}{colour}\]")

    child.expect_prompt = expect_prompt
    return child


def _screen(text: str) -> str:
    return _ESCAPES.sub("", text).replace("\r", "")


def _quit(child: Any) -> None:
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("prompt", ["simple", "default"])
def test_auto_mode_reads_input_as_ipython_does(tmp_path: Path, prompt: str) -> None:
    """A complete line runs on Enter (no continuation prompt), its value is there, and
    `exit` leaves IPython instead of becoming a cached cell."""
    child = _ipython(tmp_path, prompt)
    child.expect_prompt(1)
    child.sendline("%load_ext nbcache")
    child.expect_prompt(2)
    child.sendline("%nbcache auto")
    child.expect_prompt(3)
    child.sendline("y = 41 + 1")
    child.expect_prompt(4)  # before: `...:` and two more Enters
    child.sendline("y")
    child.expect("42")
    child.expect_prompt(5)
    child.sendline("def f(x):")  # incomplete input still continues
    child.expect(r"\.\.\.:")
    child.sendline("    return x + 1")
    child.sendline("")
    if prompt == "default":
        child.sendline("")  # prompt_toolkit's auto-indent waits for a dedent
    child.expect_prompt(6)
    child.sendline("f(y)")
    child.expect("43")
    child.expect_prompt(7)
    _quit(child)


# What it prints is not what is typed: the terminal echoes the typed line.
_BODY = "print('be' + 'gun', flush=True); time.sleep(2); print('end' + 'ed'); z = 7"


def _background_cell(child: Any, prompt: str) -> None:
    child.send("%%cache -b\r")
    time.sleep(0.3)
    child.send(_BODY + "\r")
    time.sleep(0.3)
    child.send("\r")
    if prompt == "simple":
        time.sleep(0.3)
        child.send("\r")  # a cell magic ends at an empty line
    else:
        time.sleep(0.3)
        child.send("\x1b\r")  # Escape, Enter: run the multi-line cell


@pytest.mark.parametrize("prompt", ["simple", "default"])
def test_background_output_shows_and_is_recorded(tmp_path: Path, prompt: str) -> None:
    """The body's prints show as they come, the line saying it ended is not written over
    the prompt, and a later session that restores the cell shows the same prints."""
    child = _ipython(tmp_path, prompt)
    child.expect_prompt(1)
    child.sendline("%load_ext nbcache")
    child.expect_prompt(2)
    child.sendline("import time")
    child.expect_prompt(3)
    _background_cell(child, prompt)
    child.expect("begun")
    child.expect_prompt(4)
    child.expect("ended")  # printed while the prompt waits, nothing typed meanwhile
    child.expect(r"done after")
    child.expect(r"\n")
    shown = _screen(child.before + child.after)
    child.sendline("z")
    child.expect("7")
    child.expect_prompt(5)
    _quit(child)
    assert "In [4]: nbcache" not in _screen(shown)

    again = _ipython(tmp_path, prompt)
    again.expect_prompt(1)
    again.sendline("%load_ext nbcache")
    again.expect_prompt(2)
    again.sendline("import time")
    again.expect_prompt(3)
    _background_cell(again, prompt)
    again.expect_prompt(4)
    # Restored: the prints come back at once, before the prompt (a run would print
    # "ended" two seconds after it), so they were recorded into the entry.
    replayed = _screen(again.before)
    assert "begun" in replayed and "ended" in replayed, replayed
    _quit(again)
