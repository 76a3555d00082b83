"""What `%nbcache why` and the status line tell a user, in a fresh InteractiveShell per
test: the last run's own story (restored, ran, ran uncached), cells named as the user
knows them, names in the order the user cares about, what storing cost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbcache.cache.core import Cache
from nbcache.run.naming import by_interest
from nbcache.run.report import CellReport
from nbcache.ui.magics import NbcacheMagics
from nbcache.ui.status import status_line
from tests.shells import close_shell, new_shell


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


def run(shell: InteractiveShell, cell: str, cell_id: str | None = None) -> str:
    """Run ``cell``; what it printed and displayed (the status line), as text."""
    with capture_output() as captured:
        result = shell.run_cell(cell, store_history=True, cell_id=cell_id)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec  # type: ignore[misc]
    shown = [str(out.data.get("text/plain", "")) for out in captured.outputs]
    return "\n".join([captured.stdout, *shown])


def why(shell: InteractiveShell, name: str = "") -> str:
    with capture_output() as captured:
        shell.run_line_magic("nbcache", f"why {name}")
    return captured.stdout


def magics(shell: InteractiveShell) -> NbcacheMagics:
    (found,) = [m for m in shell.magics_manager.registry.values() if isinstance(m, NbcacheMagics)]
    return found


# -- %nbcache why -------------------------------------------------------------------------


def test_why_after_a_hit_says_it_restored(ip: InteractiveShell) -> None:
    run(ip, "a = 1")
    run(ip, "%%cache\nb = a + 1\n")
    run(ip, "a = 2")
    run(ip, "%%cache\nb = a + 1\n")
    assert "input `a` changed (1 -> 2)" in why(ip)
    run(ip, "a = 1")
    assert "restored" in run(ip, "%%cache\nb = a + 1\n")
    said = why(ip)
    assert said.startswith("- it restored: its key matches the entry stored ")
    assert "changed" not in said


def test_a_miss_after_a_hit_compares_with_what_was_restored(ip: InteractiveShell) -> None:
    """a=1 ran, a=2 ran, a=1 restored: the next miss changed `a` from 1, not from 2."""
    for value in (1, 2, 1, 3):
        run(ip, f"a = {value}")
        run(ip, "%%cache\nb = a + 1\n")
    assert why(ip) == "- input `a` changed (1 -> 3)\n"


def test_why_of_a_name_nothing_has_is_no_such_entry(ip: InteractiveShell) -> None:
    run(ip, "%%cache -n known\nb = 1\n")
    said = why(ip, "nosuchname")
    assert "no entry named `nosuchname`" in said and "see %nbcache list" in said
    assert "has not missed" not in said
    assert "it restored" not in why(ip, "known")  # a known name still answers for itself


def test_why_of_a_stored_name_not_run_in_this_session(ip: InteractiveShell, tmp_path: Path) -> None:
    from nbcache.cache.default import set_default_cache

    run(ip, "%%cache -n earlier\nb = 1\n")
    close_shell(ip)
    set_default_cache(None)
    fresh = new_shell(tmp_path)
    try:
        assert "`earlier` has not run in this session; its entry is stored" in why(fresh, "earlier")
    finally:
        ip.__dict__.update(fresh.__dict__)


def test_why_after_nocache_says_so(ip: InteractiveShell) -> None:
    run(ip, "%%cache\nb = 1\n")
    run(ip, "%%nocache\nc = 3\n")
    assert why(ip) == "- it ran uncached: it begins with %%nocache\n"


def test_why_after_a_cell_that_calls_ipython(ip: InteractiveShell) -> None:
    """A cell with a line magic runs uncached: why says so, not an earlier cell's story."""
    run(ip, "a = 1")
    run(ip, "%%cache\nb = a + 1\n")
    run(ip, "a = 2")
    run(ip, "%%cache\nb = a + 1\n")
    run(ip, "%%cache\n%time c = 2\n")
    said = why(ip)
    assert "calls IPython" in said and "`a`" not in said


def test_why_names_a_cell_by_its_code_not_its_front_end_id(ip: InteractiveShell) -> None:
    run(ip, "a = 1")
    run(ip, "%%cache\nb = a + 1\n", cell_id="cd12b6dd")
    said = why(ip)
    assert "`b = a + 1`" in said and "cd12b6dd" not in said


def test_plan_names_a_cell_by_its_code_not_its_id(ip: InteractiveShell) -> None:
    run(ip, "%nbcache auto")
    run(ip, "a = 1", cell_id="aa11bb22")
    rows = magics(ip).cells.plan([("ff00ee11", "b = a * 7")], {})
    assert rows[0].action == "run"
    assert "`b = a * 7`" in rows[0].reasons[0] and "ff00ee11" not in rows[0].line()


# -- the status line ----------------------------------------------------------------------


SEARCH = """%%cache
from fractions import Fraction
from decimal import Decimal, Context
X_train, X_test, y_train, y_test = [1], [2], [3], [4]
search = Fraction(X_train[0], y_train[0])
"""


def test_names_lead_with_what_the_cell_computed(ip: InteractiveShell) -> None:
    """Capitals no longer lead: the result bound alone first, unpacked values next, imports
    after them, loop variables last."""
    line = run(ip, SEARCH)
    assert "computed search, X_train, X_test and 5 more" in line
    line = run(ip, "%%cache\ntotal = 0\nfor day in range(3):\n    total += day\n")
    assert "computed total, day " in line
    simulation = (
        "%%cache\nrng = 7\nmean = rng * 2\nstock = 0\nshort = 0\n"
        "for day in range(3):\n    stock = stock + mean\n    short += stock < 0\n"
        "risk = {'mean': mean, 'short': short}\n"
    )
    assert "computed risk, short, stock and 3 more" in run(ip, simulation)


def test_names_order_in_detail() -> None:
    import json

    source = (
        "import json\nfor i in range(2):\n    pass\nfig, ax = 1, 2\n"
        "def f():\n    inner = 1\nModel = int\nwith open('x') as fh:\n    pass\n"
        "rows = [k for k in range(3) if (last := k)]\nresult = f()\n"
    )
    names = ["Model", "ax", "f", "fh", "fig", "i", "json", "last", "result", "rows", "touched"]
    namespace: dict[str, Any] = {"json": json, "Model": int, "f": by_interest}
    assert by_interest(source, names, namespace) == [
        "result",  # assigned last: what the cell ends with leads
        "rows",
        "last",  # the walrus runs before `rows` is bound
        "fig",
        "ax",
        "touched",  # changed in place: bound nowhere in the cell
        "f",
        "Model",  # bound alone, but to a class
        "json",
        "i",
        "fh",
    ]
    assert by_interest("x = (", ["b", "a"], {}) == ["a", "b"]  # no parse: by name


def test_a_restore_shows_names_in_the_same_order(ip: InteractiveShell) -> None:
    run(ip, SEARCH)
    assert "restored search, X_train, X_test and 5 more" in run(ip, SEARCH)


def test_the_line_says_what_storing_took(ip: InteractiveShell, monkeypatch: Any) -> None:
    """A store that takes long (a big entry, a slow disk) shows in the line, apart from the
    body's time, so the user sees what the cell cost."""
    put = Cache.put

    def slow(self: Cache, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)
        return put(self, *args, **kwargs)

    monkeypatch.setattr(Cache, "put", slow)
    line = run(ip, "%%cache\nx = 1\n")
    assert " stored in " in line, line
    shown = float(line.split(" stored in ")[1].split(" s")[0])
    assert shown >= 0.3
    assert line.index("computed x in") < line.index(" stored in ")


def test_status_line_store_time() -> None:
    report = CellReport("computed", ("big",), 3.5, 2 * 10**9, store_seconds=4.5)
    assert status_line(report) == "nbcache: computed big in 3.5 s · 2.0 GB stored in 4.5 s"
    quick = CellReport("computed", ("x",), 0.2, 821, store_seconds=0.002)
    assert status_line(quick) == "nbcache: computed x in 0.20 s · 821 B stored"


def test_imports_only_cell_says_once_that_caching_gains_nothing(ip: InteractiveShell) -> None:
    first = run(ip, "%%cache\nimport json\nfrom fractions import Fraction\n")
    assert "imports only" in first and "saves no time" in first
    assert "it only imports" in why(ip)
    assert "imports only" not in run(ip, "%%cache\nimport decimal\n")
    assert "imports only" not in run(ip, "%%cache\nimport json\nx = json.dumps(1)\n")
    assert "it only imports" in why(ip, "import decimal")


# -- help ---------------------------------------------------------------------------------


def test_cache_help_names_the_cell_magic(ip: InteractiveShell) -> None:
    doc = ip.magics_manager.magics["cell"]["cache"].__doc__
    assert "%%cache [-n NAME]" in doc
    assert "\n  %cache " not in doc


def test_why_takes_a_first_line_of_code_as_typed(ip: InteractiveShell) -> None:
    run(ip, '%%cache\nprint("it\'s")\n')
    run(ip, "x = 1")
    said = why(ip, 'print("it\'s")')
    assert 'no earlier entry of the cell `print("it\'s")`' in said
    assert "no earlier entry of the cell `print" in why(ip, "'print(\"it's\")'")
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="No closing quotation"):
        ip.run_line_magic("nbcache", "clear 'it")  # other commands still parse as before


def test_a_background_card_orders_names_as_the_status_line(ip: InteractiveShell) -> None:
    cell = "%%cache -b -n order\nimport json\nfor i in range(2):\n    pass\nresult = str(i)\n"
    with capture_output() as shown:
        ip.run_cell(cell, store_history=True)
        ip.run_line_magic("nbcache", "wait order")
    assert "computed result, json, i" in shown.stdout, shown.stdout


def test_why_finds_an_auto_mode_cell_by_its_first_line(ip: InteractiveShell) -> None:
    """Auto mode files cells under the front end's id; the user asks by the code they see."""
    run(ip, "%nbcache auto")
    run(ip, "a = 1", cell_id="aa11bb22")
    run(ip, "b = a + 1", cell_id="cd12b6dd")
    run(ip, "a = 2", cell_id="aa11bb22")
    run(ip, "b = a + 1", cell_id="cd12b6dd")
    run(ip, "c = 3", cell_id="ee33ff44")
    assert why(ip, "b = a + 1") == "- input `a` changed (1 -> 2)\n"


def test_auto_mode_gives_no_advice_against_caching_imports(ip: InteractiveShell) -> None:
    """Auto mode stores what an imports cell binds for the cells after it: `why` does not
    tell the user to leave it uncached."""
    run(ip, "%nbcache auto")
    run(ip, "import json", cell_id="aa11bb22")
    assert "it only imports" not in why(ip)
