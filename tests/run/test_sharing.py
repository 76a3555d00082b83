"""``run/sharing.py``: which other names an entry keeps beside what a cell bound, so that a
restore brings back what shares memory or an object with it as the plain run left it."""

from __future__ import annotations

from typing import Any

import numpy as np

from nbcache.run.sharing import WALK_BUDGET, aliases, mutable_parts, sharers, sharing


def test_arrays_sharing_memory_with_what_the_cell_bound_are_kept() -> None:
    base = np.arange(10)
    namespace: dict[str, Any] = {"base": base, "view": base[2:5], "other": np.arange(3)}
    assert sharing(namespace, ["view"]) == ["base"]
    assert sharing(namespace, ["other"]) == []
    assert sharing({"x": [1]}, ["x"]) == []  # no array, nothing to look for


def test_other_names_of_the_same_object_are_kept_but_not_of_equal_immutables() -> None:
    shared = [1, 2]
    namespace: dict[str, Any] = {"a": shared, "b": shared, "c": [1, 2], "n": 5, "m": 5}
    assert aliases(namespace, ["a"]) == ["b"]  # not c, which is only equal
    assert aliases(namespace, ["n"]) == []  # an immutable value: nothing a change shows through


def test_names_holding_a_part_of_what_the_cell_changed_are_kept() -> None:
    inner = {"k": [1]}
    outer = {"inner": inner}
    namespace: dict[str, Any] = {"outer": outer, "inner": inner, "apart": {"k": [1]}}
    assert sharers(namespace, ["outer"]) == ["inner"]
    assert sharers(namespace, ["apart"]) == []


def test_the_identity_walk_stops_at_its_budget() -> None:
    chain: list[Any] = []
    for _ in range(WALK_BUDGET * 2):
        chain = [chain]
    budget = [WALK_BUDGET]
    assert len(mutable_parts([chain], budget)) == WALK_BUDGET and budget == [0]
