"""A notebook class loads as the live class only when the live one has the same
definition; another class of the same name (edited since) never takes its place."""

from __future__ import annotations

from typing import Any

import nbcache.keys  # noqa: F401 - registers the digest classes are told apart by
from nbcache.entry.pickling import dump_parts, load_parts, restoring_into

SOURCE = "class Box:\n    size = {size}\n    def area(self):\n        return self.size ** 2\n"


def _namespace(size: int) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(SOURCE.format(size=size), "<cell>", "exec"), namespace)
    return namespace


def test_the_same_definition_loads_as_the_live_class() -> None:
    made = _namespace(2)
    with restoring_into(made):
        pickled = dump_parts(made["Box"]())
    live = _namespace(2)
    with restoring_into(live):
        box = load_parts(pickled.stream, pickled.buffers)
    assert type(box) is live["Box"] and box.area() == 4


def test_an_edited_class_of_the_same_name_is_not_used() -> None:
    made = _namespace(2)
    with restoring_into(made):
        pickled = dump_parts(made["Box"]())
    edited = _namespace(3)
    with restoring_into(edited):
        box = load_parts(pickled.stream, pickled.buffers)
    assert type(box) is not edited["Box"] and box.area() == 4
    assert edited["Box"].size == 3  # the live class is left as the notebook defined it
