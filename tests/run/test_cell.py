"""``run/cell.py`` on its own: cells cached against a plain fake shell, no IPython."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell


def _cells(root: Path) -> tuple[FakeShell, CellRunner]:
    shell = FakeShell()
    cache = Cache(LocalStore(root), signer=Signer(b"secret"))
    return shell, CellRunner(shell, lambda: cache)


def test_a_miss_then_a_hit_in_a_new_shell(tmp_path: Path) -> None:
    """The first shell computes and reports it; a second shell restores the same values
    and reports the same stored size."""
    cell = "total = sum(range(n))\ntotal * 2"
    first, cells = _cells(tmp_path)
    first.user_ns["n"] = 10
    assert cells.run(cell, CellOptions()) == 90
    (computed,) = first.reports
    assert (computed.outcome, computed.names, computed.where) == ("computed", ("total",), "store")
    second, again = _cells(tmp_path)
    second.user_ns["n"] = 10
    assert again.run(cell, CellOptions()) == 90 and second.user_ns["total"] == 45
    (restored,) = second.reports
    assert restored.outcome == "restored" and restored.size == computed.size > 0


def test_a_changed_input_misses(tmp_path: Path) -> None:
    """Another value of an input is another key: the body runs again."""
    shell, cells = _cells(tmp_path)
    shell.user_ns["n"] = 3
    cells.run("out = n * 2", CellOptions())
    shell.user_ns["n"] = 4
    cells.run("out = n * 2", CellOptions())
    assert shell.user_ns["out"] == 8
    assert [r.outcome for r in shell.reports] == ["computed", "computed"]


def test_a_background_cell_reports_through_its_card(tmp_path: Path) -> None:
    """A background cell feeds the card the shell made, and its variables arrive."""
    shell, cells = _cells(tmp_path)
    cells.run("print('working')\nanswer = 42", CellOptions(background=True, name="bg"))
    (task,) = cells.wait("bg")
    assert task.state == "done" and shell.user_ns["answer"] == 42
    (card,) = shell.cards
    assert "".join(p[1] for p in card.outputs if p[0] == "stdout") == "working\n"
    assert [r.outcome for r in card.reports] == ["computed"]


def test_the_core_runs_without_ipython(tmp_path: Path) -> None:
    """Caching a cell imports neither IPython nor ipywidgets."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from nbcache.cache.core import Cache
        from nbcache.entry.signing import Signer
        from nbcache.run.cell import CellRunner
        from nbcache.run.cellrun import CellOptions
        from nbcache.store import LocalStore
        from tests.run.fake_shell import FakeShell
        shell = FakeShell()
        cache = Cache(LocalStore({str(tmp_path)!r}), signer=Signer(b"s"))
        cells = CellRunner(shell, lambda: cache)
        assert cells.run("x = 1\\nx + 1", CellOptions()) == 2
        print(sorted(m for m in ("IPython", "ipywidgets") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_listings_name_a_cell_by_its_first_line_of_code() -> None:
    """A comment above the code does not name the cell; the code does."""
    from nbcache.keys.scope import analyze

    code = analyze("# Simulate a year\n\nyear = simulate(365)\n")
    assert code.first_line == "year = simulate(365)"
    assert analyze("# only a comment\n").first_line == "# only a comment"
