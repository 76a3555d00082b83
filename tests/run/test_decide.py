"""``run/decide.py``: the one decision of what happens to a cell, taken here directly, and
the same decision seen through ``%%cache`` (the fake shell) and the plan."""

from __future__ import annotations

import json
from pathlib import Path

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.auto import AutoMode
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.decide import FORCED, Look, decide, read
from nbcache.run.plan import plan
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell


def _cache(root: Path) -> Cache:
    return Cache(LocalStore(root), signer=Signer(b"secret"))


def test_a_cell_that_cannot_be_keyed_says_why_without_a_key() -> None:
    namespace = {"json": json}
    assert read("g = (", namespace, identity="c").action == "uncached"
    assert read("get_ipython().run_line_magic('ls', '')", namespace, identity="c").action == (
        "uncached"
    )
    patch = read("json.flag = 1", namespace, identity="c")
    assert patch.action == "always" and "`json`" in patch.reasons[0]
    plain = read("a = 1", namespace, identity="c")
    assert plain.action == "run" and plain.code is not None and plain.run is None


def test_miss_restore_and_force(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    namespace: dict[str, object] = {}
    first = decide("a = [1, 2]", CellOptions(), namespace, cache, identity="x")
    assert first.action == "run" and first.run is not None
    assert first.reasons == ("no earlier entry of the cell `a = [1, 2]` to compare with",)

    shell = FakeShell()
    shell.cell_id = "x"
    CellRunner(shell, lambda: cache).run("a = [1, 2]", CellOptions())
    again = decide("a = [1, 2]", CellOptions(), {}, _cache(tmp_path), identity="x")
    assert again.action == "restore" and again.hit is not None
    assert again.hit.info.key == first.run.key.key  # the key the miss would have stored
    forced = decide("a = [1, 2]", CellOptions(force=True), {}, cache, identity="x")
    assert forced.action == "run" and forced.reasons == (FORCED,) and forced.hit is None
    edited = decide("a = [1, 2, 3]", CellOptions(), {}, cache, identity="x")
    assert edited.action == "run" and "the cell's code changed" in edited.reasons


def test_the_plan_and_the_run_take_the_same_decision(tmp_path: Path) -> None:
    """The plan's action for each cell is what a whole-notebook run (lazy auto mode, a
    fresh kernel) then does."""
    cells = [("one", "a = list(range(5))"), ("two", "b = a + [1]"), ("three", "c = len(b)")]
    shell = FakeShell()
    runner = CellRunner(shell, lambda: _cache(tmp_path))
    for cell_id, source in cells:
        shell.cell_id = cell_id
        runner.run(source, CellOptions())
    rows = plan(cells, _cache(tmp_path), lambda s: s)  # type: ignore[arg-type]
    fresh = FakeShell()
    again = CellRunner(fresh, lambda: _cache(tmp_path), auto=AutoMode(lazy=True))
    outcomes = []
    for cell_id, source in cells:
        fresh.cell_id = cell_id
        outcomes.append(again.decide(source, CellOptions(auto=True)).action)
        again.run(source, CellOptions(auto=True))
    assert [r.decided for r in rows] == outcomes == ["restore-header"] * 3
    assert [o["outcome"] for o in again.auto.outcomes] == ["restored"] * 3  # type: ignore[union-attr]


def test_a_header_hit_in_a_whole_notebook_run_restores_stand_ins(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    shell = FakeShell()
    shell.cell_id = "x"
    CellRunner(shell, lambda: cache).run("a = list(range(10))", CellOptions(auto=True))
    fresh = _cache(tmp_path)  # a new kernel: nothing in memory
    header = decide("a = list(range(10))", CellOptions(), {}, fresh, identity="x", look=Look.HEADER)
    assert header.action == "restore-header" and header.recorded is not None
    assert header.hit is not None and header.hit.value is None  # nothing was unpickled
    planned = decide(
        "a = list(range(10))", CellOptions(), {}, _cache(tmp_path), identity="x", look=Look.PLANNED
    )
    assert planned.action == "restore-header"
