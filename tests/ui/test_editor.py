"""The kernel's end of the editor extension's comm (nbcache.ui.editor), in a fresh
InteractiveShell per test with comms that record what they are sent: each cell's state
and why after it runs, the plan an editor asks for, and nothing to a comm no editor
said hello on."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbcache.errors import CacheWarning
from nbcache.ui.editor import Editor, state_of
from nbcache.ui.magics import NbcacheMagics
from tests.shells import close_shell, new_shell


class FakeComm:
    """What an ipykernel comm offers the editor: send, on_msg, on_close."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.handler: Callable[[dict[str, Any]], None] | None = None

    def send(self, data: dict[str, Any]) -> None:
        self.sent.append(data)

    def on_msg(self, handler: Callable[[dict[str, Any]], None]) -> None:
        self.handler = handler

    def on_close(self, handler: Callable[[Any], None]) -> None:
        pass

    def receive(self, data: dict[str, Any]) -> None:
        assert self.handler is not None
        self.handler({"content": {"data": data}})

    def states(self) -> list[tuple[str, str | None]]:
        return [(m["cell_id"], m["cell_state"]) for m in self.sent if m["type"] == "state"]


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


@pytest.fixture
def editor(ip: InteractiveShell) -> Iterator[Editor]:
    """An editor on ``ip``'s cells, its hooks registered as ``open`` does in a kernel."""
    magics = ip.magics_manager.registry["NbcacheMagics"]
    assert isinstance(magics, NbcacheMagics)
    found = Editor(ip, magics.cells)
    ip.events.register("pre_run_cell", found.pre_run_cell)
    ip.events.register("post_run_cell", found.post_run_cell)
    yield found
    ip.events.unregister("pre_run_cell", found.pre_run_cell)
    ip.events.unregister("post_run_cell", found.post_run_cell)


def run(ip: InteractiveShell, cell: str, cell_id: str) -> None:
    with capture_output(), warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)  # a lock kept in memory says so
        result = ip.run_cell(cell, store_history=True, cell_id=cell_id)
    result.raise_error()


def test_nothing_is_sent_until_an_editor_says_hello(ip: InteractiveShell, editor: Editor) -> None:
    """Then it is told the last state of each cell so far, and each new one."""
    comm = FakeComm()
    editor.follow(comm, heard=False)  # the comm the kernel opens as nbcache loads
    run(ip, "%%cache\na = 1", "c1")
    run(ip, "%%cache\na = 2", "c1")
    run(ip, "%%cache\nb = 2", "c2")
    assert comm.sent == []
    comm.receive({"type": "hello"})
    run(ip, "%%cache\nb = 2", "c2")
    assert comm.states() == [("c1", "ran"), ("c2", "ran"), ("c2", "restored")]


def test_each_cell_says_what_it_did_and_why(ip: InteractiveShell, editor: Editor) -> None:
    comm = FakeComm()
    editor.follow(comm, heard=True)
    run(ip, "import json", "plain")
    run(ip, "%%cache\nx = 21 * 2", "stored")
    run(ip, "%%cache\nx = 21 * 2", "stored")
    run(ip, "%%cache\nimport threading\nlock = threading.Lock()", "memory")
    run(ip, "%%cache\njson.nbcache_editor_test = True", "patch")
    run(ip, "%%cache\n%env NBCACHE_EDITOR_TEST=1", "shell")
    assert comm.states() == [
        ("plain", None),
        ("stored", "ran"),
        ("stored", "restored"),
        ("memory", "memory"),
        ("patch", "always"),
        ("shell", "uncached"),
    ]
    records = [m["record"] for m in comm.sent if m.get("record")]
    assert [r["outcome"] for r in records] == [
        "ran",
        "restored",
        "kept in memory",
        "always runs",
        "uncached",
    ]
    assert "no earlier entry" in records[0]["why"] and "seconds" in records[0]
    assert "its key matches" in records[1]["why"]  # %nbcache why's words
    assert "seconds" not in records[4]


def test_a_background_cell_is_running_then_ran(ip: InteractiveShell, editor: Editor) -> None:
    comm = FakeComm()
    editor.follow(comm, heard=True)
    run(ip, "%%cache -b -n slow\nimport time\ntime.sleep(0.3)\nslow = 1", "bg")
    assert comm.states() == [("bg", "running")]
    deadline = time.monotonic() + 20
    while ("bg", "ran") not in comm.states():
        assert time.monotonic() < deadline, comm.sent
        time.sleep(0.05)


def test_the_plan_an_editor_asks_for(ip: InteractiveShell, editor: Editor) -> None:
    """From the edited cell on, in this kernel: what reads the edit runs again, the rest
    would restore."""
    comm = FakeComm()
    editor.follow(comm, heard=False)
    run(ip, "n = 3", "n")
    run(ip, "%%cache\ndouble = n * 2", "double")
    run(ip, "%%cache\nother = 5", "other")
    cells = [["n", "n = 4", 1], ["double", "%%cache\ndouble = n * 2", 2]]
    cells.append(["other", "%%cache\nother = 5", 3])
    comm.receive({"type": "plan", "seq": 7, "cells": cells})
    reply = comm.sent[-1]
    assert reply["type"] == "plan" and reply["seq"] == 7
    decided = {row["cell_id"]: row["decided"] for row in reply["rows"]}
    assert decided["double"] == "run" and decided["other"].startswith("restore")
    assert "n" in next(r["why"] for r in reply["rows"] if r["cell_id"] == "double")


def test_state_of_reads_the_note() -> None:
    assert state_of({"outcome": "ran", "stored": 0}) == "memory"
    assert state_of({"outcome": "ran", "always": True}) == "always"
    assert state_of({"outcome": "uncached", "action": "always"}) == "always"
    assert state_of({"outcome": "restored"}) == "restored"
