"""``run/plan.py``: what a whole-notebook run would do with each cell, and why, read from
a store that cells run through the fake shell filled; no cell body runs in a plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    # cell 3 runs unless the new `b` comes out as the old: no plan can know before
    assert [r.action for r in rows] == ["restore", "run", "depends", "restore"]
    assert rows[1].reasons == ("the cell's code changed",)
    assert rows[2].reasons == (
        "it reads `b`, which cell 2 runs again (it restores instead if `b` comes out as before)",
    )
    assert rows[2].line().startswith("cell 3 `c = sum(b)`: run or restore (")


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
    assert [r.action for r in rows] == ["run", "depends", "restore", "depends"]
    assert "it reads `a`, which cell 1 runs again" in rows[1].reasons[0]
    # `textwrap` is bound by more than its import: what it holds is known once it ran
    assert "it reads `textwrap`, which cell 2 runs again" in rows[3].reasons[0]
    shell = _run(tmp_path, edited)
    assert shell.reports[2].outcome == "restored" and shell.reports[3].outcome == "restored"


def test_a_row_says_which_outcomes_of_the_run_it_allows() -> None:
    def row(action: str) -> PlanRow:
        return PlanRow(0, 1, "id", "a = 1", action, ())  # type: ignore[arg-type]

    executed = ("ran", "kept in memory", "always runs", "uncached", "not cached", "failed")
    assert row("restore").allows("restored") and row("restore").allows("not run")
    assert not any(row("restore").allows(o) for o in executed)
    assert all(row("run").allows(o) for o in executed) and not row("run").allows("restored")
    assert all(row("depends").allows(o) for o in (*executed, "restored"))


def test_a_cell_that_never_ran_with_the_store_runs_whatever_it_reads(tmp_path: Path) -> None:
    """No entry can be its: none was made by it or by a cell of its code, so it runs even
    though what it reads is not known yet; a cell with the code of one before it may hit
    that cell's entry, made moments before, so it depends."""
    cells = [("one", "a = [1]"), ("two", "b = a * 2"), ("three", "b = a * 2")]
    rows = _plan(tmp_path, cells)
    assert [r.action for r in rows] == ["run", "run", "depends"]
    assert rows[1].reasons == (
        "it reads `a`, which cell 1 runs again, and it never ran with this store",
    )
    _run(tmp_path, cells[:1])
    edited = [("one", "a = [2]"), ("two", "b = a * 2")]
    assert [r.action for r in _plan(tmp_path, edited)] == ["run", "run"]
    _run(tmp_path, cells)
    assert [r.action for r in _plan(tmp_path, edited)] == ["run", "depends"]
    # another id, the same code: that cell's entry may be the one it restores from
    assert _plan(tmp_path, [("one", "a = [3]"), ("new", "b = a * 2")])[1].action == "depends"


def test_cells_that_run_every_time_have_the_seconds_of_their_last_run(tmp_path: Path) -> None:
    """A plan's estimate counts every cell that executes, so auto mode notes how long a
    cell that ran uncached took, as it does for a cell that ran cached."""
    from nbcache.run.auto import AutoMode

    shell = FakeShell()
    cells = CellRunner(shell, lambda: _cache(tmp_path))
    cells.auto = AutoMode()
    given = {"json": json, "get_ipython": lambda: None}
    shell.user_ns.update(given)
    notebook = [("shell", "get_ipython()\nq = 1"), ("patch", "json.nbcache_plan_flag = 1")]
    try:
        for cell_id, source in notebook:
            shell.cell_id = cell_id
            cells.run(source, CellOptions(auto=True))
    finally:
        vars(json).pop("nbcache_plan_flag", None)
    rows = _plan(tmp_path, notebook, initial=given)
    assert [(r.action, r.decided) for r in rows] == [("run", "uncached"), ("run", "always")]
    assert all(r.seconds is not None and r.seconds >= 0 for r in rows)


FORGETFUL = '''
class Forgetful:
    """Like scikit-learn's Bunch: unpickling drops an attribute __init__ set."""

    def __init__(self, data):
        self.data = data
        self._internal = {}

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.data = state["data"]
'''


def test_a_value_whose_digest_drifts_through_pickle_keys_the_cells_after_it_as_in_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run keys a restored value that unpickles slightly different by the digest it
    was made with; so does the plan, or it says run where the run restores."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "forgetful_plan.py").write_text(FORGETFUL)
    monkeypatch.syspath_prepend(str(lib))
    cells = [
        # seeding changes the outside state: the entry restores in full, not by stand-ins
        (
            "make",
            "import random\nfrom forgetful_plan import Forgetful\nrandom.seed(5)\n"
            "thing = Forgetful([1, 2, 3])",
        ),
        ("read", "total = sum(thing.data)"),
    ]
    store = tmp_path / "store"
    _run(store, cells)
    rows = _plan(store, cells)
    assert [(r.action, r.decided) for r in rows] == [
        ("restore", "restore"),
        ("restore", "restore-header"),
    ]


def test_after_a_cell_that_runs_every_time_a_changed_outside_state_only_depends(
    tmp_path: Path,
) -> None:
    """A cell that runs uncached may seed a generator as the run before did: the plan,
    which runs nothing, cannot know, so a cell whose entry was made after that seed may
    restore or run."""
    given = {"get_ipython": lambda: None}
    cells = [
        ("seed", "get_ipython()\nimport random\nrandom.seed(7)"),
        ("draw", "import random\nx = random.random()"),
    ]
    shell = FakeShell()
    shell.user_ns.update(given)
    runner = CellRunner(shell, lambda: _cache(tmp_path))
    for cell_id, source in cells:
        shell.cell_id = cell_id
        runner.run(source, CellOptions())
    import random

    random.seed(8)  # the plan's kernel has drawn elsewhere
    rows = _plan(tmp_path, cells, initial=given)
    assert [r.action for r in rows] == ["run", "depends"]
    assert "the state of the `random` module's generator differs" in rows[1].reasons[0]
    assert (
        rows[1].reasons[-1] == "cell 1 runs before it and may set that as it was (it restores then)"
    )
    # without the cell that may seed it, the same difference is a run
    assert [r.action for r in _plan(tmp_path, cells[1:], initial=given)] == ["run"]


def test_a_matplotlib_magic_is_replayed_and_imports_change_nothing_outside(
    tmp_path: Path,
) -> None:
    """``%matplotlib`` sets the backend and settings the keys of drawing cells read: the
    plan runs it as the run will. A cell of it and imports leaves the outside state known,
    so a difference in that state after it is a run, not "run or restore"."""
    import random

    from IPython.core.inputtransformer2 import TransformerManager

    given = {"get_ipython": lambda: None}
    cells = [("mpl", "%matplotlib inline\nimport json"), ("draw", "x = random.random()")]
    shell = FakeShell()
    shell.user_ns.update({**given, "random": random})
    runner = CellRunner(shell, lambda: _cache(tmp_path))
    # a kernel that seeded random: its state is an input of the cell drawing from it
    shell.cell_id = "seed"
    runner.run("random.seed(1)", CellOptions())
    shell.cell_id = "draw"
    runner.run(cells[1][1], CellOptions())
    random.seed(9)
    replayed: list[str] = []
    rows = plan(
        cells,
        _cache(tmp_path),
        TransformerManager().transform_cell,
        initial={**given, "random": random},
        matplotlib=replayed.append,
    )
    assert replayed == ["inline"]
    assert [r.action for r in rows] == ["run", "run"]
    assert "the state of the `random` module's generator differs" in rows[1].reasons
