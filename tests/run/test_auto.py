"""``run/auto.py``: which cells auto mode wraps, which of their entries it stores, and
what it notes of each, on its own and through cells run by the fake shell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.auto import AutoMode, fixed_cost, from_environment, wraps
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions, ModuleRef
from nbcache.run.records import CellEntry
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell

NEVER = 1e9  # min_seconds no body reaches: only the cells always stored are


@pytest.mark.parametrize(
    ("cell", "wrapped"),
    [
        ("a = 1", True),
        ("  \n\n# only a comment\n", True),  # code cells with nothing to run go through too
        ("%matplotlib inline\nx = 1", True),  # a line magic runs as without nbcache
        ("%%time\nx = 1", False),
        ("\n  %%nocache\nx = 1", False),
        ("%%cache -n mine\nx = 1", False),
        ("await asyncio.sleep(0)", False),
        ("async with lock:\n    x = 1", False),
        ("async def f():\n    await g()\n", True),  # awaits inside a function only
        ("f = lambda: (await_count := 1)", True),  # a name that merely starts with await
        ("", False),
        ("   ", False),
    ],
)
def test_which_cells_are_wrapped(cell: str, wrapped: bool) -> None:
    assert wraps(cell) is wrapped


def test_the_store_rule_weighs_time_against_size() -> None:
    auto = AutoMode()
    assert fixed_cost(0) == pytest.approx(0.0005)
    assert fixed_cost(10**6) == pytest.approx(0.0025)
    assert not auto.admit(CellEntry(vars={}).stored(), 10**6, 0.002)
    assert auto.admit(CellEntry(vars={}).stored(), 10**6, 0.003)
    assert AutoMode(min_seconds=0.1).admit(CellEntry(vars={}).stored(), 0, 0.1)
    assert not AutoMode(min_seconds=0.1).admit(CellEntry(vars={}).stored(), 0, 0.099)


def test_some_cells_are_stored_whatever_they_cost() -> None:
    """Outside state changed (random draws), notebook code or a module bound."""
    auto = AutoMode(min_seconds=NEVER)
    cheap = CellEntry(vars={"x": 1}, plain=["x"]).stored()
    assert not auto.admit(cheap, 10, 0.0)
    assert auto.admit({**cheap, "effects": {"random": "state"}}, 10, 0.0)
    assert auto.admit(CellEntry(vars={"f": object()}).stored(), 10, 0.0)  # not plain data
    assert auto.admit(CellEntry(vars={"np": ModuleRef("numpy")}, plain=["np"]).stored(), 10, 0.0)


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NBCACHE_AUTO", raising=False)
    assert from_environment() is None
    monkeypatch.setenv("NBCACHE_AUTO", "lazy")
    monkeypatch.setenv("NBCACHE_AUTO_MIN_SECONDS", "0.25")
    monkeypatch.setenv("NBCACHE_AUTO_LOG", str(tmp_path / "log.jsonl"))
    auto = from_environment()
    assert auto is not None
    assert (auto.lazy, auto.min_seconds, auto.log_path) == (True, 0.25, str(tmp_path / "log.jsonl"))
    # a whole-notebook run stores every cell, however cheap: no threshold applies
    assert auto.whole and auto.admit({"vars": {"x": 1}, "plain": ["x"]}, 10, 0.0)
    monkeypatch.setenv("NBCACHE_AUTO", "1")
    monkeypatch.delenv("NBCACHE_AUTO_MIN_SECONDS")
    auto = from_environment()
    assert auto is not None and (auto.lazy, auto.min_seconds, auto.whole) == (False, None, False)


def test_a_note_is_kept_and_logged_and_a_log_that_went_away_is_dropped(tmp_path: Path) -> None:
    auto = AutoMode(log_path=str(tmp_path / "log.jsonl"))
    auto.note({"cell_id": "a", "outcome": "ran", "path": Path("x")})
    assert [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [
        {"cell_id": "a", "outcome": "ran", "path": "x"}
    ]
    gone = AutoMode(log_path=str(tmp_path / "no-such-folder" / "log.jsonl"))
    gone.note({"cell_id": "b", "outcome": "ran"})
    assert gone.log_path is None and gone.outcomes == [{"cell_id": "b", "outcome": "ran"}]


# -- through cells ---------------------------------------------------------------------

NOTEBOOK = [
    ("cheap", "a = 1"),
    ("draws", "import random\nr = random.random()"),
    ("code", "def double(x):\n    return 2 * x\n"),
]


def _session(root: Path, auto: AutoMode) -> tuple[FakeShell, CellRunner, Cache]:
    shell = FakeShell()
    cache = Cache(LocalStore(root), signer=Signer(b"secret"))
    cells = CellRunner(shell, lambda: cache)
    cells.auto = auto
    return shell, cells, cache


def _run(shell: FakeShell, cells: CellRunner, notebook: list[tuple[str, str]]) -> None:
    for cell_id, source in notebook:
        shell.cell_id = cell_id
        cells.run(source, CellOptions(auto=True))


def test_a_cheap_cell_stays_in_memory_and_the_others_are_stored(tmp_path: Path) -> None:
    auto = AutoMode(min_seconds=NEVER, log_path=str(tmp_path / "log.jsonl"))
    shell, cells, cache = _session(tmp_path / "store", auto)
    _run(shell, cells, NOTEBOOK)
    assert [r.where for r in shell.reports] == ["memory", "store", "store"]
    assert sorted(r.first_line for r in cache.ledger.records()) == [
        "def double(x):",
        "r = random.random()",
    ]
    assert auto.cells == [(cell_id, source) for cell_id, source in NOTEBOOK]  # as typed
    assert [(o["cell_id"], o["outcome"]) for o in auto.outcomes] == [
        ("cheap", "ran"),
        ("draws", "ran"),
        ("code", "ran"),
    ]
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == json.loads(json.dumps(auto.outcomes, default=str))


def test_a_new_session_restores_the_stored_cells(tmp_path: Path) -> None:
    shell, cells, _ = _session(tmp_path / "store", AutoMode(min_seconds=NEVER))
    _run(shell, cells, NOTEBOOK)
    auto = AutoMode(min_seconds=NEVER)
    shell, cells, _ = _session(tmp_path / "store", auto)
    _run(shell, cells, NOTEBOOK)
    assert [o["outcome"] for o in auto.outcomes] == ["ran", "restored", "restored"]
    assert shell.user_ns["double"](21) == 42


def test_with_no_threshold_every_cell_is_stored(tmp_path: Path) -> None:
    shell, cells, cache = _session(tmp_path / "store", AutoMode(min_seconds=0))
    _run(shell, cells, NOTEBOOK)
    assert [r.where for r in shell.reports] == ["store"] * 3 and len(cache.ledger.records()) == 3
