"""``run/modstate.py``: a cell that changes state a module holds is found by comparing the
attributes it touches before and after, so that it is never restored as if it had not."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcache.keys.scope import analyze
from nbcache.run.modstate import ModuleWatch, held_by_module, local


@pytest.fixture
def beside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A module beside the notebook (its file outside the Python installation)."""
    (tmp_path / "mymod_state.py").write_text("CONFIG = {'x': 0}\nLIMIT = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mymod_state

    yield mymod_state
    sys.modules.pop("mymod_state", None)


def test_a_module_beside_the_notebook_is_local_and_an_installed_one_is_not(
    beside: types.ModuleType,
) -> None:
    assert local(beside)
    assert not local(pytest)
    assert not local(sys)  # built in: no file


def test_a_change_in_place_of_a_local_module_attribute_is_seen(
    beside: types.ModuleType,
) -> None:
    namespace = {"mymod_state": beside}
    code = analyze("mymod_state.CONFIG['x'] = 1")
    watch = ModuleWatch(code, namespace)
    beside.CONFIG["x"] = 1
    assert watch.changed() == ["mymod_state.CONFIG"]


def test_reading_a_module_attribute_changes_nothing(beside: types.ModuleType) -> None:
    watch = ModuleWatch(analyze("y = mymod_state.LIMIT + 1"), {"mymod_state": beside})
    assert watch.changed() == []


def test_a_value_a_local_module_holds_is_named_by_it(beside: types.ModuleType) -> None:
    assert held_by_module(beside.CONFIG) == "mymod_state.CONFIG"
    assert held_by_module({"x": 0}) is None  # equal, not the same object
    assert held_by_module(3) is None  # immutables are nobody's state
