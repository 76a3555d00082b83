"""The task card, the status line and the cache browser, as widget state with no front
end, and their text forms."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from nbcache.cache.core import Cache
from nbcache.cache.ledger import EntryRecord
from nbcache.run.report import CellReport
from nbcache.tasks.task import Task
from nbcache.ui.browser import PAGE, BrowserState, CacheBrowser, totals_text
from nbcache.ui.cards import TextCard, WidgetCard, card_view, make_card
from nbcache.ui.status import names_text, status_line
from nbcache.ui.widgets import browse
from tests.conftest import key_of

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
    assert shown == [view.box]
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
    assert {r.key for r in cache.records()} == set(keys)  # asked, not done
    view.confirm.click()
    assert {r.key for r in cache.records()} == {keys[0], keys[2]}
    assert view.message.value.startswith("Deleted 1 entry")
    assert len(_texts(view)) == 2


def test_browser_pins_and_prunes(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin keeps an entry through Prune, which asks first and then fits the limit."""
    keys = _filled(cache)
    view = CacheBrowser(cache, lambda _box: None, lambda: 1)
    view.select([keys[0]])
    view.pin.click()
    assert [r.pinned for r in cache.records() if r.key == keys[0]] == [True]
    assert view.pin.description == "Unpin"
    view.prune.click()
    assert "Prune the store to its limit" in view.question.value
    view.confirm.click()
    assert [r.key for r in cache.records()] == [keys[0]]
    assert view.message.value.startswith("Pruned 2 entries")


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
    text = browse(cache, widgets=False)
    assert text.startswith("nbcache: 3 entries, ") and "cell 2" in text
    assert "cell 0" in capsys.readouterr().out
    assert totals_text([], ".nbcache", None) == "The store .nbcache is empty."


def test_browse_can_be_forced_to_text(cache: Any, capsys: Any) -> None:
    """nbcache.browse(widgets=False) prints the text table even where widgets would show."""
    import nbcache

    cache.put("ab" * 16, 1, {"label": "forced"})
    nbcache.browse(cache, widgets=False)
    assert "forced" in capsys.readouterr().out
