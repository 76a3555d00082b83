"""The task card, the status line and the cache browser, as widget state with no front
end, and their text forms."""

from __future__ import annotations

import html
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache.cache.core import Cache
from nbcache.cache.ledger import EntryRecord
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.memo import memoize
from nbcache.run.report import CellReport, Resume
from nbcache.tasks.task import Task
from nbcache.ui.browser import CacheBrowser
from nbcache.ui.browserstate import PAGE, BrowserState, partial_of, totals_text
from nbcache.ui.cards import TextCard, WidgetCard, card_view, make_card
from nbcache.ui.status import names_text, status_html, status_line
from nbcache.ui.widgets import browse
from tests.conftest import key_of
from tests.run.fake_shell import FakeShell
from tests.shells import close_shell, new_shell

# -- the task card ------------------------------------------------------------------


def _card(name: str = "fit") -> tuple[Task[Any], WidgetCard]:
    task: Task[Any] = Task(name)
    card = make_card(task, True, lambda _shown: None, print)
    assert isinstance(card, WidgetCard)
    return task, card


def test_card_states_and_cancel_only_while_it_can_act() -> None:
    """Queued and running cards offer Cancel; done, failed and cancelled ones do not."""
    task, card = _card()
    assert 'data-state="queued"' in card.head.value and card.cancel in card.top.children
    gate = threading.Event()
    worker = threading.Thread(target=task.run, args=(gate.wait,))
    worker.start()
    deadline = time.monotonic() + 5
    while 'data-state="running"' not in card.head.value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert card.cancel in card.top.children
    gate.set()
    worker.join()
    assert 'data-state="done"' in card.head.value
    assert card.cancel not in card.top.children
    failed, failed_card = _card("broken")
    failed.run(lambda: 1 / 0)
    assert failed_card.cancel not in failed_card.top.children
    assert "ZeroDivisionError: division by zero" in failed_card.body.value
    assert 'class="nbcache-card-tb"' in failed_card.body.value  # the traceback, readable
    cancelled, cancelled_card = _card("stopped")
    cancelled.cancel()
    assert 'data-state="cancelled"' in cancelled_card.head.value
    assert cancelled_card.cancel not in cancelled_card.top.children


def test_card_progress_result_and_output_pane() -> None:
    """Count, rate and time left while running; names, size and store once done; the
    output pane opens with the first output and folds when the task ends."""
    task, card = _card()
    assert card.pane.layout.display == "none"  # no output yet, no empty pane

    def body() -> None:
        task.step(0, 4)
        task.started = time.time() - 2  # two seconds in, half done: 1 it/s, 2 s left
        task.step(2, 4)
        view = card_view(task)
        assert (view.count, view.timing) == ("2 / 4 · 1.0 it/s", "elapsed 2.0 s · about 2.0 s left")
        card.output("stdout", "one\ntwo\n")
        assert card.pane.selected_index == 0 and card.pane.get_title(0) == "output · 2 lines"
        card.finished(CellReport("computed", ("model", "score"), 2.0, size=821))

    task.run(body)
    assert card.pane.selected_index is None  # folded once the task ended
    assert "computed <b>model, score</b> · 821 B stored" in card.body.value
    assert 'style="width: 100.0%"' in card.body.value
    assert card.out.outputs[0]["text"] == "one\ntwo\n"


def test_card_rate_after_a_resume_counts_this_runs_steps() -> None:
    """A run that resumed at step 100 of 600 and made 43 more in 2 s runs at 21.5 it/s,
    with 457 steps (21.3 s) left: the skipped steps took no time in this run."""
    task, _card_shown = _card()

    def body() -> None:
        task.mark_resumed("resumed at step 100 of 600, saved 1 min ago")
        task.step(100, 600)  # the loop's first report: where the checkpoint left it
        task.started = time.time() - 2
        task.step(143, 600)
        view = card_view(task)
        assert view.count == "143 / 600 · 21.5 it/s"
        assert view.timing.startswith("elapsed 2.0 s · about 21.")

    task.run(body)
    assert task.future.exception() is None
    fresh: Task[Any] = Task("fresh")  # from the start: every step is this run's

    def from_start() -> None:
        fresh.step(0, 10)
        fresh.started = time.time() - 2
        fresh.step(4, 10)
        assert card_view(fresh).count == "4 / 10 · 2.0 it/s"

    fresh.run(from_start)
    assert fresh.future.exception() is None


def test_card_draws_progress_a_few_times_a_second() -> None:
    """Thousands of progress steps cost a handful of widget updates, not thousands."""
    task, card = _card()
    values: list[str] = []
    card.body.observe(lambda change: values.append(change["new"]), "value")

    def body() -> None:
        for step in range(5000):
            task.step(step, 5000)

    task.run(body)
    assert len(values) < 20


def test_text_card_says_start_and_end() -> None:
    """The text twin: one line when it starts, one when it ends, the traceback on failure."""
    lines: list[str] = []
    task: Task[Any] = Task("fit")
    card = TextCard(task, lines.append)
    task.on_change(card.update)
    card.finished(CellReport("computed", ("model",), 1.0, size=2048))
    task.run(lambda: None)
    assert lines[0] == "nbcache: fit runs in the background (%nbcache wait to block on it)"
    assert lines[1].startswith("nbcache: fit done after ") and "computed model · 2.0 KB" in lines[1]


def test_card_says_where_the_run_resumed() -> None:
    """A run that picked up a checkpoint says so on its card while it runs and once it
    is done, in the widget and in the text twin; never in the cell's output pane."""
    task, card = _card()
    resume = Resume(412, 1000, 180.0)
    lines: list[str] = []
    text_task: Task[Any] = Task("fit")
    text_card = TextCard(text_task, lines.append)
    text_task.on_change(text_card.update)

    def body(on: Task[Any]) -> None:
        on.step(412, 1000)
        on.mark_resumed(resume.text)
        assert card_view(on).resumed == "resumed at step 412 of 1000, saved 3 min ago"

    task.run(lambda: body(task))
    card.finished(CellReport("computed", ("total",), 2.0, size=821, resumed=resume))
    card.update(task)
    assert (
        '<div class="nbcache-card-resumed">resumed at step 412 of 1000, saved 3 min ago</div>'
        in card.body.value
    )
    assert card.pane.layout.display == "none"  # no output: the line is not output
    text_card.finished(CellReport("computed", ("total",), 2.0, size=821, resumed=resume))
    text_task.run(lambda: body(text_task))
    assert lines[1] == "nbcache: fit resumed at step 412 of 1000, saved 3 min ago"
    assert lines[2].endswith("· resumed at step 412 of 1000, saved 3 min ago")
    # a card that learns it only from the report (a process worker's) shows it too
    quiet: Task[Any] = Task("far")
    quiet.run(lambda: None)
    done = card_view(quiet, CellReport("computed", ("x",), 1.0, resumed=resume))
    assert done.resumed == resume.text


# -- the status line ----------------------------------------------------------------


def test_status_line_names_and_size() -> None:
    """One line for hits and misses, the stored size, a short form for many names."""
    assert names_text(["a", "b", "c", "d", "e"]) == "a, b, c, d, e"
    assert names_text([f"v{n}" for n in range(12)]) == "v0, v1, v2 and 9 more"
    miss = CellReport("computed", ("answer",), 1.0, size=821)
    assert status_line(miss) == "nbcache: computed answer in 1.0 s · 821 B stored"
    hit = CellReport("restored", ("answer",), 0.004, size=821, computed_seconds=1.0)
    assert status_line(hit).startswith("nbcache: restored answer (821 B) in 4 ms · computed in")
    memory = CellReport("computed", ("x",), 0.1, where="no-store")
    assert status_line(memory).endswith("kept in memory (--no-store)")


def test_status_line_says_where_a_run_resumed() -> None:
    """A resumed run's line says the step, the checkpoint's age and what came back."""
    resume = Resume(412, 1000, 180.0, seconds_before=40.0)
    told = CellReport("resumed", ("total", "history"), 0.1, size=8_000_000, resumed=resume)
    assert status_line(told) == (
        "nbcache: resumed at step 412 of 1000, saved 3 min ago · "
        "restored total, history (8.0 MB) in 0.10 s"
    )
    assert 'data-state="running"' in status_html(told)  # the cell goes on running
    endless = CellReport("resumed", (), 0.0, resumed=Resume(7, None, 5.0))
    assert status_line(endless) == "nbcache: resumed at step 7, saved 5 s ago"
    done = CellReport("computed", ("total",), 1.0, size=821, resumed=resume)
    assert status_line(done).endswith("821 B stored · resumed at step 412 of 1000, saved 3 min ago")


# -- the cache browser ----------------------------------------------------------------


def _filled(cache: Cache) -> list[str]:
    keys = [key_of(n) for n in range(3)]
    for n, key in enumerate(keys):
        meta = {"label": f"cell {n}", "compute_seconds": n, "first_line": f"x{n} = load({n})"}
        cache.put(key, list(range(1000 * (n + 1))), meta)
    return keys


def _texts(view: CacheBrowser) -> list[str]:
    return [row.children[1].value for row in view.rows if row.layout.display != "none"]


def test_browser_lists_sorts_and_filters(cache: Cache) -> None:
    """Each entry is a row; a column head sorts (twice: the other way); the filter keeps
    the rows that match; the totals read as a sentence."""
    _filled(cache)
    shown: list[Any] = []
    view = CacheBrowser(cache, shown.append, lambda: None)
    assert [item.widget for item in shown] == [view.box]
    assert len(_texts(view)) == 3
    assert view.totals.value.startswith('<div class="nbcache-totals"><b>3 entries</b>')
    view.heads[2].click()  # size, largest first
    assert "cell 2" in _texts(view)[0]
    view.heads[2].click()
    assert "cell 0" in _texts(view)[0]
    view.filter.value = "load(1)"
    assert len(_texts(view)) == 1 and "cell 1" in _texts(view)[0]
    view.filter.value = "nothing like it"
    assert _texts(view) == [] and "No entry matches" in view.empty.value


def test_browser_deletes_after_confirming(cache: Cache) -> None:
    """Delete asks first; confirming removes the selected entries from the store."""
    keys = _filled(cache)
    view = CacheBrowser(cache, lambda _box: None, lambda: None)
    assert view.delete.disabled  # nothing selected
    view.select([keys[1]])
    assert not view.delete.disabled and "1 entry selected" in view.count.value
    view.delete.click()
    assert (
        view.confirmation.layout.display is None and "Delete <b>1 entry</b>" in view.question.value
    )
    assert view.question.value.endswith(
        "from the store? The cell or call that made it will compute again next time."
    )
    view.select(keys[:2])
    view.delete.click()
    assert "The cells and calls that made them will compute again next time." in (
        view.question.value
    )
    view.select([keys[0]], False)
    view.delete.click()
    assert {r.key for r in cache.ledger.records()} == set(keys)  # asked, not done
    view.confirm.click()
    assert {r.key for r in cache.ledger.records()} == {keys[0], keys[2]}
    assert view.message.value.startswith("Deleted 1 entry")
    assert len(_texts(view)) == 2


def test_browser_pins_and_prunes(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin keeps an entry through Prune, which asks first and then fits the limit."""
    keys = _filled(cache)
    view = CacheBrowser(cache, lambda _box: None, lambda: 1)
    view.select([keys[0]])
    view.pin.click()
    assert [r.pinned for r in cache.ledger.records() if r.key == keys[0]] == [True]
    assert view.pin.description == "Unpin"
    view.prune.click()
    assert "Prune the store to its limit" in view.question.value
    view.confirm.click()
    assert [r.key for r in cache.ledger.records()] == [keys[0]]
    assert view.message.value.startswith("Pruned 2 entries")


def test_browser_shows_checkpoints_as_partial_entries(cache: Cache) -> None:
    """A cell run that did not finish leaves a checkpoint: the browser lists it as a
    partial entry of that cell, with the step it reached and its age; a finished entry
    has no such mark."""
    cells = CellRunner(FakeShell(), lambda: cache)
    loop = (
        "from nbcache import progress\nacc = []\nfor i in progress(range(10)):\n"
        "    acc.append(i)\n    if i == 6:\n        raise ValueError(i)\n"
    )
    with pytest.raises(ValueError):
        cells.run(loop, CellOptions(name="loop", checkpoint=0.0))
    cells.run("answer = 42", CellOptions(name="plain"))
    deadline = time.monotonic() + 10
    while not any(partial_of(r) for r in cache.ledger.records()) and time.monotonic() < deadline:
        time.sleep(0.01)  # the checkpoint is written in the background
    (partial,) = [p for r in cache.ledger.records() if (p := partial_of(r, now=r.created + 120))]
    assert (partial.name, partial.total) == ("loop", 10) and 1 <= partial.step <= 7
    assert partial.text == f"partial · step {partial.step} of 10 · saved 2 min ago"
    view = CacheBrowser(cache, lambda _box: None, lambda: None)
    rows = _texts(view)
    assert len(rows) == 2
    (row,) = [r for r in rows if 'class="nbcache-partial"' in r]
    assert ">loop <span" in row and f"partial · step {partial.step} of 10 · saved " in row
    assert "from nbcache import progress" in row  # the cell's first line, not "—"
    (plain,) = [r for r in rows if r is not row]
    assert "plain" in plain and "partial" not in plain
    view.filter.value = "partial"
    assert _texts(view) == [row]


def _scaled(a: Any, n: Any = 1) -> Any:
    return (a, n)


def test_browser_code_column_says_what_made_each_entry(cache: Cache) -> None:
    """A cell's row shows its first statement past its imports; a memoized call's row
    shows the call, arguments and all, instead of a dash."""
    cells = CellRunner(FakeShell(), lambda: cache)
    cells.run(
        "import math\nfrom os import path\n\n# the sum\ntotal = math.fsum([1.0, 2.0])\n",
        CellOptions(name="summed"),
    )
    cells.run("import json\n", CellOptions(name="imports only"))
    scaled = memoize(cache=cache)(_scaled)
    assert scaled(3, n=2) == (3, 2)
    assert scaled(np.ones((2, 500)), n="x" * 200) is not None
    assert scaled(b"x" * 10_000) is not None  # a bytes' repr would be all of it
    view = CacheBrowser(cache, lambda _box: None, lambda: None)
    codes = [
        html.unescape(code)
        for cells in _texts(view)
        for code in re.findall(r'class="nbcache-code" title="([^"]*)"', cells)
    ]
    assert set(codes) >= {
        "total = math.fsum([1.0, 2.0])",
        "import json",
        "_scaled(3, n=2)",
        "_scaled(<bytes of 10000>)",
    }
    (big,) = [c for c in codes if "ndarray" in c]
    assert big.startswith("_scaled(<ndarray 2x500>, n='xxxx") and len(big) < 60


def test_browser_empty_state(cache: Cache) -> None:
    """An empty store says how to fill it, not an empty table."""
    view = CacheBrowser(cache, lambda _box: None, lambda: None)
    assert _texts(view) == [] and "No cached results yet" in view.empty.value
    assert "is empty" in view.totals.value


class _BigCache:
    """10,000 records and nothing else: what a big store's listing gives the browser."""

    store = None

    def __init__(self, count: int) -> None:
        now = time.time()
        base = EntryRecord(key_of(0), 0, now, now, 0, 1.0, label="", first_line="x = f()")
        self.items = [
            replace(base, key=key_of(n), size=n, uses=n % 7, label=f"cell {n}")
            for n in range(count)
        ]

    @property
    def ledger(self) -> _BigCache:
        return self  # listings are the ledger's: it stands for both

    def records(self) -> list[EntryRecord]:
        return self.items


def test_browser_pages_a_big_store_quickly() -> None:
    """10,000 entries: one page of rows exists, and sorting or paging takes milliseconds."""
    start = time.perf_counter()
    view = CacheBrowser(_BigCache(10_000), lambda _box: None, lambda: None)
    view.heads[2].click()
    view.next.click()
    view.filter.value = "cell 99"
    assert time.perf_counter() - start < 2.0
    assert len(view.rows) == PAGE
    assert view.where.value.endswith(" matching, of 10,000")
    assert all("99" in text for text in _texts(view))


def test_browser_state_pages() -> None:
    """Paging stops at both ends; the selection survives a reload of the records."""
    state = BrowserState()
    state.load(_BigCache(60).items)
    state.turn(-1)
    assert state.page == 0
    state.turn(5)
    assert state.page == 2 and len(state.rows) == 10
    state.selected = {key_of(1), "gone"}
    state.load(_BigCache(60).items)
    assert state.selected == {key_of(1)}


def test_text_form(cache: Cache, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a Jupyter kernel the browser is a text table under the totals sentence."""
    _filled(cache)
    browse(cache, widgets=False)
    text = capsys.readouterr().out
    assert text.startswith("nbcache: 3 entries, ") and "cell 2" in text and "cell 0" in text
    assert totals_text([], ".nbcache", None) == "The store .nbcache is empty."


def test_browse_in_terminal_ipython_prints_the_table_once(
    cache: Cache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nbcache.browse()`` as a cell's last line: the table once, no ``Out[1]`` copy."""
    _filled(cache)
    shell = new_shell(tmp_path)
    try:
        shell.user_ns["store_cache"] = cache
        capsys.readouterr()
        shell.run_cell("import nbcache\nnbcache.browse(store_cache, widgets=False)")  # type: ignore[no-untyped-call]
        out = capsys.readouterr().out
    finally:
        close_shell(shell)
    assert out.count("nbcache: 3 entries, ") == 1 and out.count("cell 2") == 1
    assert "Out[" not in out


def _bundle(shown: Any) -> dict[str, Any]:
    return dict(shown._repr_mimebundle_())


class _Shows:
    """IPython's ``display(..., display_id=True)``: shows, and returns a handle whose
    ``update`` replaces what it showed; both recorded here."""

    def __init__(self) -> None:
        self.shown: list[Any] = []

    def __call__(self, obj: Any) -> _Shows:
        self.shown.append(obj)
        return self

    def update(self, obj: Any) -> None:
        self.shown.append(obj)


def test_browser_saves_its_text_form(cache: Cache) -> None:
    """A notebook saved without widget state shows the totals and the table, not the
    widget's repr; after a Delete it shows what is left."""
    keys = _filled(cache)
    shows = _Shows()
    view = CacheBrowser(cache, shows, lambda: None)
    bundle = _bundle(shows.shown[0])
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle["text/plain"]
    assert text.startswith("nbcache: 3 entries, ") and "cell 0" in text and "cell 2" in text
    assert "VBox" not in text and "<style>" not in text
    view.select([keys[1]])
    view.delete.click()
    view.confirm.click()
    text = _bundle(shows.shown[-1])["text/plain"]
    assert text.startswith("nbcache: 2 entries, ") and "cell 1" not in text


def test_card_text_form_follows_the_task(cache: Cache) -> None:
    """A saved card says how its task ended: done with what it made, failed with the
    error's line, cancelled; "runs in the background" only while it does."""
    ended: dict[str, str] = {}
    for name, body in (("good", lambda: None), ("broken", lambda: 1 / 0), ("stopped", None)):
        task: Task[Any] = Task(name)
        shows = _Shows()
        make_card(task, True, shows, print)
        assert _bundle(shows.shown[0])["text/plain"].endswith(
            f"{name} runs in the background (%nbcache wait to block on it)"
        )
        if body is None:
            task.cancel()
        else:
            task.run(body)
        ended[name] = _bundle(shows.shown[-1])["text/plain"]
    assert ended["good"].startswith("nbcache: good done after ")
    assert ended["broken"].startswith("nbcache: broken failed after ")
    assert ended["broken"].endswith("\nZeroDivisionError: division by zero")
    assert ended["stopped"].startswith("nbcache: stopped cancelled after ")


def test_browse_can_be_forced_to_text(cache: Any, capsys: Any) -> None:
    """nbcache.browse(widgets=False) prints the text table even where widgets would show."""
    import nbcache

    cache.put("ab" * 16, 1, {"label": "forced"})
    nbcache.browse(cache, widgets=False)
    assert "forced" in capsys.readouterr().out
