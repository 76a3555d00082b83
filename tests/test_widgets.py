"""The cache browser's state with no front end, and its text form."""

from __future__ import annotations

from typing import Any

import pytest

from nbcache.cache.core import Cache
from nbcache.ui.widgets import CacheBrowser, browse

from .conftest import key_of


def _filled(cache: Cache) -> list[str]:
    keys = [key_of(n) for n in range(3)]
    for n, key in enumerate(keys):
        meta = {"label": f"cell {n}", "compute_seconds": n, "first_line": f"x{n} = load({n})"}
        cache.put(key, list(range(1000 * (n + 1))), meta)
    return keys


def test_browser_lists_entries_and_deletes_one(cache: Cache) -> None:
    """The table shows each entry; Delete removes the selected one from the store."""
    keys = _filled(cache)
    shown: list[Any] = []
    view = CacheBrowser(cache, shown.append)
    assert shown == [view.box]
    for n in range(3):
        assert f"cell {n}" in view.table.value and f"x{n} = load({n})" in view.table.value
    assert view.totals.value.split(" · ")[1].startswith("3, ")  # entries and their size
    view.choice.value = keys[1]
    view.delete.click()
    assert "cell 1" not in view.table.value
    assert {r.key for r in cache.records()} == {keys[0], keys[2]}
    assert view.message.value.startswith("deleted")


def test_browser_prunes_to_the_limit(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prune removes the least valuable entries until the store fits NBCACHE_MAX_SIZE."""
    _filled(cache)
    monkeypatch.setenv("NBCACHE_MAX_SIZE", "1B")
    view = CacheBrowser(cache, lambda _box: None)
    view.prune.click()
    assert cache.records() == []
    assert view.message.value == "pruned 3 entries"


def test_text_form(cache: Cache, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a Jupyter kernel the browser is a text table with the totals."""
    _filled(cache)
    text = browse(cache, widgets=False)
    assert "entries: 3" in text and "cell 2" in text
    assert "cell 0" in capsys.readouterr().out
