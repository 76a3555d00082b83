"""One process-wide state: how it is read and set (:class:`State`), a value that cannot
be made again (:class:`Unrestorable`), and a key a cell removed (:data:`UNSET`).

The built-in states are in :mod:`nbcache.run.states` and :mod:`nbcache.run.libstates`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["UNSET", "State", "Unrestorable", "loaded", "present"]

UNSET = "<unset>"  # a key of a keyed state that the cell removed


class Unrestorable:
    """A read value that cannot be made again (a logging handler writing to a socket):
    a cell that changes a state to one of these runs every time. Equal when it stands
    for the same object, so an unchanged one is no change."""

    __slots__ = ("ident", "what")

    def __init__(self, what: str, ident: int = 0) -> None:
        self.what = what
        self.ident = ident

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unrestorable) and (other.what, other.ident) == (
            self.what,
            self.ident,
        )

    def __hash__(self) -> int:
        return hash((self.what, self.ident))

    def __repr__(self) -> str:
        return f"<{self.what}>"


@dataclass(frozen=True)
class State:
    """One process-wide state: ``read()`` returns its value now (cheap; compared with
    ``==``; stored with an entry, so it must pickle), ``apply(value)`` sets it back.

    ``module``: read only once this module is imported (nothing here imports it).
    ``keyed``: ``read()`` returns a dict; only the keys a cell changed are stored and
    applied (``apply`` then gets those keys, removed ones as :data:`UNSET`).
    ``setting``: a setting later cells' results may depend on (print options, the
    recursion limit): the settings cells changed are an input of each later cell.
    ``delta``: what is stored of a change, from the value before and the value after
    (the working directory relative to where the cell started) or, for a keyed state,
    the keys that changed; default the value after, or those keys.
    ``reset``: sets the whole value back (a plan's undo); default ``apply``.
    """

    name: str
    read: Callable[[], Any]
    apply: Callable[[Any], None]
    module: str | None = None
    keyed: bool = False
    setting: bool = True
    what: str = ""
    delta: Callable[[Any, Any], Any] | None = None
    reset: Callable[[Any], None] | None = None

    @property
    def words(self) -> str:
        return self.what or f"`{self.name}`"


def present(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a keyed state's changes that were set, not removed."""
    return {k: v for k, v in changes.items() if v != UNSET}


def loaded(name: str) -> Any:
    """The module ``name``, already imported (a state is read only once it is)."""
    return sys.modules[name]
