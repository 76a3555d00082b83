"""``run/report.py``: what a cell run did, as the data the shell formats, checked on
the reports the fake shell receives."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.errors import CacheWarning
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.report import CellReport, Resume, age_text
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3.0, "0 s"),  # a clock that went back says no age, not a negative one
        (0.4, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (86399, "23 h"),
        (86400, "1 d"),
        (40 * 86400, "40 d"),
    ],
)
def test_an_age_in_whole_units(seconds: float, text: str) -> None:
    assert age_text(seconds) == text


def test_a_resume_says_where_it_picked_up() -> None:
    assert Resume(412, 1000, 190.0).text == "resumed at step 412 of 1000, saved 3 min ago"
    assert Resume(7, None, 5.0).text == "resumed at step 7, saved 5 s ago"


def _cells(root: Path) -> tuple[FakeShell, CellRunner, Cache]:
    shell = FakeShell()
    cache = Cache(LocalStore(root), signer=Signer(b"secret"))
    return shell, CellRunner(shell, lambda: cache), cache


def test_a_computed_then_a_restored_report(tmp_path: Path) -> None:
    cell = "import time\nstarted = time.time()\nwords = ['a', 'b'] * 100"
    shell, cells, cache = _cells(tmp_path)
    cells.run(cell, CellOptions())
    (computed,) = shell.reports
    assert computed.outcome == "computed" and computed.where == "store"
    assert set(computed.names) == {"started", "words", "time"}
    (record,) = cache.ledger.records()
    assert computed.size == record.size > 0  # the number listings show
    assert computed.seconds > 0 and computed.store_seconds > 0 and computed.resumed is None
    assert not computed.only_imports
    again, cells, _ = _cells(tmp_path)
    cells.run(cell, CellOptions())
    (restored,) = again.reports
    assert restored.outcome == "restored" and restored.size == computed.size
    assert restored.computed_seconds == pytest.approx(computed.seconds)
    assert 0 < restored.computed_at <= again.user_ns["started"] + computed.seconds + 1


def test_a_cell_not_stored_reports_size_zero_and_why(tmp_path: Path) -> None:
    shell, cells, _ = _cells(tmp_path)
    with pytest.warns(CacheWarning, match="cannot be pickled"):
        cells.run("lock = __import__('threading').Lock()\nn = 1", CellOptions())
    cells.run("m = 2", CellOptions(store=False))
    assert [(r.outcome, r.size, r.where) for r in shell.reports] == [
        ("computed", 0, "memory"),  # it would not pickle
        ("computed", 0, "no-store"),  # --no-store
    ]


def test_a_cell_that_only_imports_says_so(tmp_path: Path) -> None:
    shell, cells, _ = _cells(tmp_path)
    cells.run("import json\nimport os.path", CellOptions())
    (report,) = shell.reports
    assert report.only_imports


def test_a_report_is_frozen() -> None:
    report = CellReport("computed", ("x",), 0.1)
    with pytest.raises(AttributeError):
        report.size = 3  # type: ignore[misc]
