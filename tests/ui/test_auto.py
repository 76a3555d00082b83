"""Auto mode in a fresh InteractiveShell per test: every cell cached, cheap ones kept in
memory, hits restored from their headers alone and values loaded only when needed,
and a plan that says what a run will do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.core import Cache
from nbcache.cache.default import default_cache, set_default_cache
from nbcache.keys.standin import StandIn
from nbcache.run.auto import AutoMode, fixed_cost, wraps
from nbcache.run.cell import CellRunner
from nbcache.run.effects import forget_seeds
from nbcache.run.records import CellEntry
from nbcache.ui import magics
from tests.shells import close_shell, new_shell

SLOW = "__import__('time').sleep(0.05)\n"  # a body worth storing under the cost rule
# Auto mode whose store line sits between a cheap cell (under 1 ms, a few on a loaded
# machine) and SLOW, far from both, for tests about cells on either side of it.
CHEAP_UNDER = "%nbcache auto --min-seconds 0.02"


class Calls:
    """Counts runs of a body without being one of its inputs (it hashes as nothing)."""

    runs = 0

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (Calls, ())


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Opens shells on one store, one after the other, as kernel restarts do."""
    monkeypatch.chdir(tmp_path)
    shells: list[InteractiveShell] = []

    def open_shell(auto: str = "%nbcache auto") -> InteractiveShell:
        if shells:
            close_shell(shells.pop())
        set_default_cache(None)  # a new kernel: nothing in memory, no generator seeded
        forget_seeds()
        shell = new_shell(tmp_path)
        shell.run_line_magic("nbcache", auto.removeprefix("%nbcache "))
        shells.append(shell)
        return shell

    yield open_shell
    if shells:
        close_shell(shells.pop())


def run(shell: InteractiveShell, cell: str) -> Any:
    result = shell.run_cell(cell, store_history=True)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec  # type: ignore[misc]
    return result.result


def cells_of(shell: InteractiveShell) -> CellRunner:
    cells: CellRunner = shell.magics_manager.registry["NbcacheMagics"].cells
    return cells


def outcomes(shell: InteractiveShell) -> list[str]:
    auto = cells_of(shell).auto
    assert auto is not None
    return [o["outcome"] for o in auto.outcomes]


NOTEBOOK = [
    SLOW + "a = list(range(1000))",
    SLOW + "b = [x * 2 for x in a]",
    SLOW + "c = sum(b)\nc",
    SLOW + "d = {'n': len(a)}",
]


def test_every_cell_is_cached_and_a_restart_restores_them(session: Any) -> None:
    shell = session()
    for cell in NOTEBOOK:
        run(shell, cell)
    assert outcomes(shell) == ["ran"] * 4
    shell = session()
    results = [run(shell, cell) for cell in NOTEBOOK]
    assert outcomes(shell) == ["restored"] * 4
    assert shell.user_ns["c"] == sum(x * 2 for x in range(1000)) == results[2]
    assert shell.user_ns["d"] == {"n": 1000}


def test_nocache_other_cell_magics_and_awaiting_cells_run_as_usual(session: Any) -> None:
    shell = session()
    shell.user_ns["Calls"] = Calls
    for _ in range(2):
        run(shell, "%%nocache\nCalls.runs += 1")
        run(shell, "%%capture\nCalls.runs += 1")
    assert Calls.runs == 4
    assert outcomes(shell) == []  # none of them went through %%cache
    assert not wraps("%%time\nx = 1") and not wraps("   \n") and not wraps("await f()")
    assert wraps("x = 1") and wraps("async def f():\n    await g()")


def test_line_magics_and_shell_escapes_run_uncached_and_say_nothing(
    session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = session()
    run(shell, "%env NBCACHE_PROBE=1")
    run(shell, "n = 5\n%env NBCACHE_PROBE")
    assert outcomes(shell) == ["uncached", "uncached"]
    assert "nbcache" not in capsys.readouterr().err


def test_a_cheap_cell_is_kept_in_memory_only_and_its_dependents_still_restore(
    session: Any,
) -> None:
    # A line far from both cells' times: the cost rule's own line (0.5 ms for a small
    # entry) is crossed by an assignment on a loaded machine; the rule has its own test.
    shell = session(CHEAP_UNDER)
    run(shell, "alpha = 3")
    run(shell, SLOW + "beta = alpha * 2")
    stored = {r.first_line for r in default_cache().ledger.records()}
    assert "alpha = 3" not in stored and "__import__('time').sleep(0.05)" in stored
    shell = session(CHEAP_UNDER)
    run(shell, "alpha = 3")
    run(shell, SLOW + "beta = alpha * 2")
    assert outcomes(shell) == ["ran", "restored"]
    assert shell.user_ns["beta"] == 6


def test_the_cost_rule_weighs_the_bytes_to_store() -> None:
    auto = AutoMode()
    entry = CellEntry(vars={"x": 1}, plain=["x"]).stored()
    assert not auto.admit(entry, 1_000, 0.0001)  # an assignment of a constant
    assert auto.admit(entry, 1_000, 0.001)  # a df.head()
    # a cell that ran 0.1 s but binds a gigabyte is cheaper to run again
    assert not auto.admit(entry, 1 << 30, 0.1)
    assert fixed_cost(1 << 30) > 0.1
    assert AutoMode(min_seconds=0.0).admit(entry, 1 << 30, 0.0)


def test_a_cell_that_defines_a_function_or_imports_is_always_stored(session: Any) -> None:
    shell = session()
    run(shell, "def f(x):\n    return x + 1")
    run(shell, "import json")
    stored = {r.first_line for r in default_cache().ledger.records()}
    assert {"def f(x):", "import json"} <= stored


def test_a_lazy_run_loads_nothing_for_hits_and_only_what_an_edited_cell_reads(
    session: Any,
) -> None:
    shell = session()
    for cell in NOTEBOOK:
        run(shell, cell)
    shell = session("%nbcache auto --lazy")
    for cell in NOTEBOOK[:-1]:
        run(shell, cell)
    assert outcomes(shell) == ["restored"] * 3
    assert all(type(shell.user_ns[n]) is StandIn for n in "abc")
    run(shell, SLOW + "e = len(b)")  # an edited last cell
    assert shell.user_ns["e"] == 1000
    auto = cells_of(shell).auto
    assert auto is not None
    assert auto.outcomes[-1]["outcome"] == "ran"
    assert auto.outcomes[-1]["loaded"] == ["b"]
    assert type(shell.user_ns["a"]) is StandIn and type(shell.user_ns["c"]) is StandIn


def test_a_running_cell_loads_the_globals_of_the_functions_it_calls(session: Any) -> None:
    shell = session()
    run(shell, SLOW + "data = [1, 2, 3]")
    run(shell, SLOW + "other = [4]")
    run(shell, "def total():\n    return sum(data)")
    shell = session("%nbcache auto --lazy")
    run(shell, SLOW + "data = [1, 2, 3]")
    run(shell, SLOW + "other = [4]")
    run(shell, "def total():\n    return sum(data)")
    assert run(shell, "total() + 1") == 7
    auto = cells_of(shell).auto
    assert auto is not None
    assert auto.outcomes[-1]["loaded"] == ["data"]
    assert type(shell.user_ns["other"]) is StandIn


def test_a_cell_that_may_reach_any_name_loads_everything(session: Any) -> None:
    shell = session()
    run(shell, SLOW + "x = 41")
    run(shell, SLOW + "y = 1")
    shell = session("%nbcache auto --lazy")
    run(shell, SLOW + "x = 41")
    run(shell, SLOW + "y = 1")
    assert run(shell, "eval('x + y')") == 42
    assert shell.user_ns["x"] == 41 and shell.user_ns["y"] == 1


def test_a_result_restored_lazily_is_loaded_for_ipythons_history_names(session: Any) -> None:
    shell = session()
    run(shell, SLOW + "[1, 2, 3]")
    shell = session("%nbcache auto --lazy")
    run(shell, SLOW + "[1, 2, 3]")
    assert run(shell, "_ + [4]") == [1, 2, 3, 4]


def test_a_value_holding_notebook_code_restores_in_full(session: Any) -> None:
    shell = session()
    run(shell, SLOW + "scale = 10")
    run(shell, "def f(v):\n    return v * scale")
    run(shell, SLOW + "callbacks = {'f': f}")
    shell = session("%nbcache auto --lazy")
    run(shell, SLOW + "scale = 10")
    run(shell, "def f(v):\n    return v * scale")
    run(shell, SLOW + "callbacks = {'f': f}")
    assert type(shell.user_ns["callbacks"]) is dict  # not a stand-in: it calls into the notebook
    assert run(shell, "callbacks['f'](2)") == 20


def test_the_plan_says_what_a_run_then_does(session: Any) -> None:
    shell = session()
    for cell in NOTEBOOK:
        run(shell, cell)
    edited = [*NOTEBOOK]
    edited[1] = SLOW + "b = [x * 3 for x in a]"
    rows = cells_of(shell).plan([(None, cell) for cell in edited])
    # cell 3 reads what cell 2 computes again: it runs unless that comes out as before
    assert [r.action for r in rows] == ["restore", "run", "depends", "restore"]
    assert rows[1].reasons == ("the cell's code changed",)
    assert "reads `b`, which cell 2 runs again" in rows[2].reasons[0]
    shell = session("%nbcache auto --lazy")
    for cell in edited:
        run(shell, cell)
    assert outcomes(shell) == ["restored", "ran", "ran", "restored"]
    assert all(row.allows(o) for row, o in zip(rows, outcomes(shell), strict=True))


def test_the_plan_of_the_cells_run_so_far(session: Any) -> None:
    shell = session(CHEAP_UNDER)
    run(shell, SLOW + "a = 1")
    run(shell, "b = a + 1")
    shell.run_line_magic("nbcache", "plan")
    text = "\n".join(row.line() for row in cells_of(shell).plan())
    assert "cell 1 `__import__('time').sleep(0.05)`: restore" in text
    assert "cell 2 `b = a + 1`: run" in text and "cheaper than storing" in text


def test_names_a_cell_passes_in_strings_are_loaded(session: Any) -> None:
    """pandas' query and eval, and formulas, look names up in the caller's namespace."""
    cells = [SLOW + "limit = 1", SLOW + "import pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})"]
    shell = session()
    for cell in cells:
        run(shell, cell)
    shell = session("%nbcache auto --lazy")
    for cell in cells:
        run(shell, cell)
    assert type(shell.user_ns["limit"]) is StandIn
    assert run(shell, "frame.query('a > @limit')['a'].tolist()") == [2]


def test_a_cell_importing_from_main_loads_everything(session: Any) -> None:
    shell = session()
    run(shell, SLOW + "x = 5")
    shell = session("%nbcache auto --lazy")
    run(shell, SLOW + "x = 5")
    assert run(shell, "from __main__ import x as y\ny + 1") == 6


def test_a_cell_that_patches_installed_code_always_runs(session: Any) -> None:
    """A restore cannot set a module's attribute again: later cells would see the
    library unpatched (seaborn's colour-palette tutorial patches matplotlib)."""
    import textwrap

    cells = [
        "import textwrap",
        "def fake(*args, **kwargs):\n    return 'patched'\ntextwrap.dedent = fake",
        "out = textwrap.dedent('  x')",  # cheap: it runs again, and must see the patch
    ]
    original = textwrap.dedent
    try:
        for mode in (CHEAP_UNDER, CHEAP_UNDER, CHEAP_UNDER + " --lazy"):
            textwrap.dedent = original  # a new kernel imports the library unpatched
            shell = session(mode)
            for cell in cells:
                run(shell, cell)
            assert shell.user_ns["out"] == "patched"
            assert outcomes(shell)[1] == "uncached"
    finally:
        textwrap.dedent = original


def test_a_cheap_cell_that_drew_random_numbers_is_stored(session: Any) -> None:
    """Run again it draws others, and every cell after it would miss."""
    cells = ["import numpy as np", "y = np.random.normal(size=3)", SLOW + "z = float(y.sum())"]
    shell = session()
    for cell in cells:
        run(shell, cell)
    z = shell.user_ns["z"]
    shell = session("%nbcache auto --lazy")
    for cell in cells:
        run(shell, cell)
    assert outcomes(shell) == ["restored", "restored", "restored"]
    run(shell, "again = z")
    assert shell.user_ns["again"] == z


def test_two_names_for_one_object_stay_one_object(session: Any) -> None:
    cells = [SLOW + "a = [1]\nb = a", SLOW + "a.append(2)", SLOW + "c = list(b)"]
    shell = session()
    for cell in cells:
        run(shell, cell)
    assert shell.user_ns["c"] == [1, 2]
    for number, mode in enumerate(("%nbcache auto", "%nbcache auto --lazy")):
        shell = session(mode)
        for cell in cells:
            run(shell, cell)
        run(shell, f"same = (b == [1, 2], b is a, {number})")  # a new cell each time
        assert shell.user_ns["same"] == (True, True, number)


def test_a_query_built_in_an_earlier_cell_keys_and_loads_what_it_names(session: Any) -> None:
    cells = [
        SLOW + "import pandas as pd\nframe = pd.DataFrame({'a': range(10)})\nexpr = 'a > @limit'",
        SLOW + "limit = 5",
        SLOW + "picked = frame.query(expr)['a'].tolist()",
    ]
    shell = session()
    for cell in cells:
        run(shell, cell)
    assert shell.user_ns["picked"] == [6, 7, 8, 9]
    shell = session("%nbcache auto --lazy")
    run(shell, cells[0])
    run(shell, SLOW + "limit = 7")  # another limit: the query cell must not restore
    run(shell, cells[2])
    assert shell.user_ns["picked"] == [8, 9]
    assert outcomes(shell)[-1] == "ran"


def test_a_list_whose_digest_drifts_through_pickling_still_restores_what_reads_it(
    session: Any,
) -> None:
    """A frozen scipy distribution comes back from pickle with a generator of its own,
    not numpy's global one, so it hashes otherwise; in a list it did too (statsmodels'
    copula tutorial: the cell after it never restored)."""
    cells = [
        "from scipy import stats\nfrom statsmodels.distributions.copula.api import (\n"
        "    CopulaDistribution, GumbelCopula)",
        SLOW + "copula = GumbelCopula(theta=2)",
        SLOW + "marginals = [stats.gamma(2), stats.norm]\n"
        "joint_dist = CopulaDistribution(copula, marginals)",
        SLOW + "n = len(marginals)",
    ]
    seen = []
    for mode in ("%nbcache auto", "%nbcache auto", "%nbcache auto --lazy"):
        shell = session(mode)
        for cell in cells:
            run(shell, cell)
        seen.append(outcomes(shell))
    assert seen == [["ran"] * 4, ["restored"] * 4, ["restored"] * 4]


def test_a_cached_cell_that_patches_a_library_runs_quietly_and_why_says_so(
    session: Any, recwarn: pytest.WarningsRecorder
) -> None:
    import textwrap

    original = textwrap.dedent
    shell = session("%nbcache auto off")
    try:
        run(shell, "import textwrap")
        run(shell, "%%cache\ndef fake(*args):\n    return 'patched'\ntextwrap.dedent = fake")
        assert not [w for w in recwarn if "nbcache" in str(w.message)]
        reasons = cells_of(shell).why()
        assert "sets an attribute of `textwrap`" in reasons[0]
    finally:
        textwrap.dedent = original


def test_a_cell_once_stored_stays_stored(session: Any) -> None:
    """Whether a cell near the store line is stored must not hang on the machine's load
    in each run, which made which cells ran differ from run to run: here the line moves
    instead."""
    shell = session("%nbcache auto --min-seconds 0")
    run(shell, "alpha = 1")
    run(shell, "beta = alpha * 2")
    shell = session("%nbcache auto --min-seconds 10")
    run(shell, "alpha = 2")
    run(shell, "beta = alpha * 2")  # a miss that would not be stored under the new line
    run(shell, "gamma = alpha * 3")  # never stored before: the line applies
    stored = [r.first_line for r in default_cache().ledger.records()]
    assert stored.count("beta = alpha * 2") == 2 and stored.count("alpha = 1") == 1
    assert "gamma = alpha * 3" not in stored and "alpha = 2" not in stored  # other cells


def test_a_lazy_hit_counts_one_use_and_a_plan_none(session: Any) -> None:
    """Uses rank entries for eviction: a restore is one, planning is none."""
    cells = [SLOW + "a = [1, 2]", "import json\nb = json.dumps(a)"]  # stand-ins, in full
    shell = session()
    for cell in cells:
        run(shell, cell)

    def uses() -> list[int]:
        return sorted(r.uses for r in default_cache().ledger.records())

    assert uses() == [0, 0]
    cells_of(shell).plan([(None, cell) for cell in cells])
    assert uses() == [0, 0]
    shell = session("%nbcache auto --lazy")
    for cell in cells:
        run(shell, cell)
    assert outcomes(shell) == ["restored", "restored"]
    assert uses() == [1, 1]


def test_a_lazy_restore_counts_one_use_from_its_header_whole_or_memory(
    session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However a lazy run restores a cell (stand-ins from its header, its value loaded
    whole because a hidden result needs it, or the value a restore left in memory), the
    restore is one use, never none or two."""
    cells = [SLOW + "a = [1, 2]", SLOW + "h = len(a)\nh;"]
    shell = session()
    for cell in cells:
        run(shell, cell)
    how: list[str] = []
    peek = Cache.peek

    def peeked(cache: Cache, *args: Any, **kwargs: Any) -> Any:
        hit = peek(cache, *args, **kwargs)
        how.append("none" if hit is None else f"{hit.source}, value {hit.value is not None}")
        return hit

    monkeypatch.setattr(Cache, "peek", peeked)

    def uses() -> list[int]:
        return sorted(r.uses for r in default_cache().ledger.records())

    shell = session("%nbcache auto --lazy")
    for cell in cells:
        run(shell, cell)
    assert how == ["store, value False", "store, value True"]
    assert uses() == [1, 1]
    for cell in cells:
        run(shell, cell)
    assert how[2:] == ["store, value False", "memory, value True"]
    assert outcomes(shell) == ["restored"] * 4
    assert uses() == [2, 2]


def test_the_wrapper_leaves_input_as_ipython_reads_it(session: Any) -> None:
    """Whether typed input is complete is decided on the user's code, and a line IPython
    rewrites (``exit``, autocall) or code that does not parse is left to IPython."""
    shell = session()
    check = shell.input_transformer_manager.check_complete
    assert check("y = 41 + 1\n") == ("complete", None)
    assert check("def f():\n")[0] == "incomplete"
    assert "run_cell_magic('cache'" in shell.transform_cell("y = 41 + 1\n")
    for plain in ("exit\n", "quit\n", "x = (\n"):
        assert "run_cell_magic" not in shell.transform_cell(plain), plain


def test_a_lazy_restore_holds_its_entry_against_eviction(session: Any) -> None:
    """The stand-ins a lazy run puts back load from their entry later: this process keeps
    that entry from eviction while it lives."""
    from nbcache.store import base

    shell = session()
    run(shell, SLOW + "kept = list(range(10))")
    (record,) = default_cache().ledger.records()
    shell = session("%nbcache auto --lazy")
    try:
        run(shell, SLOW + "kept = list(range(10))")
        assert type(shell.user_ns["kept"]) is StandIn
        assert record.key in base._HELD
    finally:
        base._HELD.discard(record.key)


def test_a_cell_is_transformed_and_its_arguments_parsed_no_more_than_needed(
    session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per cell: IPython's static transforms once for IPython and once to see whether the
    cell parses (its body's run reuses that), and %%cache --auto's arguments not again."""
    shell = session()
    run(shell, NOTEBOOK[0])  # parses the arguments of --auto once
    manager = shell.input_transformer_manager
    transforms: list[str] = []
    real = manager.transform_cell
    monkeypatch.setattr(manager, "transform_cell", lambda c: transforms.append(c) or real(c))
    parses: list[str] = []
    monkeypatch.setattr(magics, "parse_argstring", lambda *a: parses.append(a[1]))
    for cell in NOTEBOOK[1:]:
        run(shell, cell)
    assert len(transforms) == 2 * len(NOTEBOOK[1:])
    assert parses == []
    assert outcomes(shell) == ["ran"] * len(NOTEBOOK)
