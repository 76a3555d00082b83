"""``run/plan.py``: what a whole-notebook run would do with each cell, and why, read from
a store that cells run through the fake shell filled; no cell body runs in a plan."""

from __future__ import annotations

import json
from pathlib import Path

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.plan import PlanRow, plan
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell

NOTEBOOK = [
    ("one", "a = list(range(5))"),
    ("two", "b = [x * 2 for x in a]"),
    ("three", "c = sum(b)"),
    ("four", "d = 'other'"),
]


def _cache(root: Path) -> Cache:
    return Cache(LocalStore(root), signer=Signer(b"secret"))


def _run(root: Path, cells: list[tuple[str, str]]) -> FakeShell:
    """Run ``cells`` as %%cache cells, each under its id, in a fresh fake shell."""
    shell = FakeShell()
    runner = CellRunner(shell, lambda: _cache(root))
    for cell_id, source in cells:
        shell.cell_id = cell_id
        runner.run(source, CellOptions())
    return shell


def _plan(root: Path, cells: list[tuple[str, str]], **kwargs: object) -> list[PlanRow]:
    return plan([(i, s) for i, s in cells], _cache(root), lambda s: s, **kwargs)  # type: ignore[arg-type]


def test_on_an_empty_store_every_cell_runs_and_says_why(tmp_path: Path) -> None:
    rows = _plan(tmp_path, NOTEBOOK)
    assert [r.action for r in rows] == ["run"] * 4
    assert rows[0].reasons == ("no earlier entry of the cell `a = list(range(5))` to compare with",)
    assert "it reads `a`, which cell 1 runs again" in rows[1].reasons[0]
    assert "it reads `b`, which cell 2 runs again" in rows[2].reasons[0]
    assert rows[3].reasons[0].startswith("no earlier entry")


def test_after_a_run_every_cell_restores_from_its_entry(tmp_path: Path) -> None:
    _run(tmp_path, NOTEBOOK)
    rows = _plan(tmp_path, NOTEBOOK)
    assert [r.action for r in rows] == ["restore"] * 4
    assert all(r.reasons[0].startswith("its key matches the entry stored ") for r in rows)
    assert all(r.seconds is not None and r.seconds >= 0 for r in rows)  # the body's last time
    assert [(r.index, r.number, r.cell_id) for r in rows] == [
        (0, 1, "one"),
        (1, 2, "two"),
        (2, 3, "three"),
        (3, 4, "four"),
    ]


def test_an_edited_cell_runs_and_so_do_the_cells_that_read_it(tmp_path: Path) -> None:
    _run(tmp_path, NOTEBOOK)
    edited = list(NOTEBOOK)
    edited[1] = ("two", "b = [x * 3 for x in a]")
    rows = _plan(tmp_path, edited)
    assert [r.action for r in rows] == ["restore", "run", "run", "restore"]
    assert rows[1].reasons == ("the cell's code changed",)
    assert rows[2].reasons == (
        "it reads `b`, which cell 2 runs again (it restores instead if `b` comes out as before)",
    )


def test_a_changed_input_from_the_namespace_runs_the_cell(tmp_path: Path) -> None:
    """A value the fresh kernel starts with is an input like any other."""
    shell = FakeShell()
    shell.user_ns["limit"] = 3
    shell.cell_id = "cut"
    CellRunner(shell, lambda: _cache(tmp_path)).run("kept = [0, 5, 9][:limit]", CellOptions())
    cell = [("cut", "kept = [0, 5, 9][:limit]")]
    assert [r.action for r in _plan(tmp_path, cell, initial={"limit": 3})] == ["restore"]
    (row,) = _plan(tmp_path, cell, initial={"limit": 2})
    assert row.action == "run" and "limit" in " ".join(row.reasons)


def test_a_plan_runs_no_body_and_counts_no_use(tmp_path: Path) -> None:
    _run(tmp_path, NOTEBOOK)
    cache = _cache(tmp_path)
    uses = {r.key: r.uses for r in cache.ledger.records()}
    calls: list[int] = []
    cells = [*NOTEBOOK, ("five", "calls.append(1)\nraise RuntimeError('ran')")]
    rows = plan(cells, cache, lambda s: s, initial={"calls": calls})
    assert calls == [] and [r.action for r in rows] == [*["restore"] * 4, "run"]
    assert {r.key: r.uses for r in cache.ledger.records()} == uses  # records() writes pending uses


def test_cells_that_always_run_say_why(tmp_path: Path) -> None:
    cells = [
        ("empty", "   \n"),
        ("timed", "%%time\ne = 1"),
        ("forced", "%%cache -f\nf = 2"),
        ("broken", "g = ("),
        ("patch", "json.nbcache_test_flag = True"),
        ("awaits", "await x"),
    ]
    rows = _plan(tmp_path, cells, initial={"json": json}, numbers=[2, 4, 6, 8, 10, 12])
    assert [r.cell_id for r in rows] == ["timed", "forced", "broken", "patch", "awaits"]
    assert [r.number for r in rows] == [4, 6, 8, 10, 12]  # as the reader counts the cells
    assert [r.reasons[0] for r in rows] == [
        "it begins with %%time, so it runs as without nbcache",
        "the cell was run with -f/--force",
        "it does not parse, so Python runs it as it is",
        "it sets an attribute of `json`, outside the namespace, which no restore can "
        "replay, so it runs every time (move the patch to a cell of its own to cache the "
        "rest)",
        "it awaits at its top level, so it runs as without nbcache",
    ]
    # the plan's words are the run's: one decision, read by `%nbcache why` and the plan
    assert [r.decided for r in rows] == ["uncached", "run", "uncached", "always", "uncached"]
    assert not hasattr(json, "nbcache_test_flag")


def test_a_named_cache_cell_is_compared_with_the_last_run_of_that_name(tmp_path: Path) -> None:
    shell = FakeShell()
    shell.cell_id = "x"
    CellRunner(shell, lambda: _cache(tmp_path)).run("h = 40 + 2", CellOptions(name="named"))
    (row,) = _plan(tmp_path, [("another-id", "%%cache -n named\nh = 40 + 2")])
    assert row.action == "restore"
    (row,) = _plan(tmp_path, [("another-id", "%%cache -n named\nh = 40 + 3")])
    assert row.reasons == ("the cell's code changed",)  # compared with the named cell's run
    (row,) = _plan(tmp_path, [("another-id", "%%cache -n other\nh = 40 + 3")])
    assert row.reasons == ("no earlier entry of the cell `other` to compare with",)


def test_a_row_reads_as_one_line() -> None:
    row = PlanRow(1, 2, "id", "b = a + 1", "run", ("first reason", "second"), 2.5)
    assert row.line() == "cell 2 `b = a + 1`: run (2.5 s): first reason; second"
    bare = PlanRow(0, 1, None, "a = 1", "restore", ("its key matches",))
    assert bare.line() == "cell 1 `a = 1`: restore: its key matches"


def test_a_module_imported_by_a_cell_that_runs_again_is_known_to_the_cells_after_it(
    tmp_path: Path,
) -> None:
    """A cell that runs again binds the same installed module it bound before: the cells
    that read only that module still restore, in the plan as in the run."""
    cells = [
        ("one", "a = [1]"),
        ("two", "import json as j\nimport textwrap\nb = a + [2]\ntextwrap = 0"),
        ("three", "c = j.dumps([3])"),
        ("four", "d = textwrap"),
    ]
    _run(tmp_path, cells)
    edited = [("one", "a = [1, 1]"), *cells[1:]]
    rows = _plan(tmp_path, edited)
    assert [r.action for r in rows] == ["run", "run", "restore", "run"]
    assert "it reads `a`, which cell 1 runs again" in rows[1].reasons[0]
    # `textwrap` is bound by more than its import: what it holds is known once it ran
    assert "it reads `textwrap`, which cell 2 runs again" in rows[3].reasons[0]
    shell = _run(tmp_path, edited)
    assert shell.reports[2].outcome == "restored" and shell.reports[3].outcome == "restored"
