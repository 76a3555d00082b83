"""The terms a caller and the cache speak in: how a key is read and kept (:class:`Ask`),
how a claim starts (:class:`Start`), and what comes back (:class:`Hit`, :class:`Outcome`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from ..entry.format import EntryInfo
from ..errors import ValuePicklingError
from .lru import LRU

__all__ = ["PLAIN", "Ask", "Hit", "InMemory", "Meta", "Outcome", "Start"]

T = TypeVar("T")


@dataclass(frozen=True)
class Hit(Generic[T]):
    """A value found in the cache, where, and what its entry says."""

    value: T
    info: EntryInfo
    source: Literal["memory", "store"]
    load_seconds: float
    size: int = 0  # what the entry takes in the store, as listings show it; 0: memory only


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What :meth:`Cache.get_or_compute` did: ``hit`` is None when it computed."""

    value: T
    hit: Hit[T] | None
    compute_seconds: float = 0.0
    stored: int = 0  # the entry's size in the store; 0 when kept in memory only


InMemory = tuple[Any, EntryInfo, int]
"""What a memory layer keeps of an entry: the live value, its header, its stored size."""

Meta = Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] | None


@dataclass(frozen=True)
class Ask:
    """How one caller reads a key and keeps what it computes; made once, passed as one.

    ``memory`` is the caller's own memory layer (a memoized function's), used
    instead of the cache's.  ``validate`` sees an entry's signed metadata
    before its value is loaded (False: a miss, say a file it was computed from
    changed); ``fresh`` sees a live value from memory (False: load it again
    from the store, a later cell mutated it).  ``unpicklable`` words the
    warning when a value cannot be stored.  ``remember=False`` leaves a value
    loaded from the store out of the memory layer, for callers that keep live
    values themselves; ``count_uses=False`` reads without counting a use of the
    entry (a plan, which only looks; eviction keeps the used ones).
    """

    persist: bool = True
    max_age: float | None = None
    name: str = "value"
    remember: bool = True
    count_uses: bool = True
    memory: LRU[str, InMemory] | None = None
    validate: Callable[[EntryInfo], bool] | None = None
    fresh: Callable[[Any], bool] | None = None
    unpicklable: Callable[[Any, ValuePicklingError], str] | None = None
    # Whether a value of this many pickled bytes, computed in this many seconds, is
    # worth storing; None: every one is. Refused values stay in the memory layer.
    admit: Callable[[Any, int, float], bool] | None = None


PLAIN = Ask()
"""How a caller with no wishes of its own reads and keeps a key."""


class Start(Enum):
    """How :meth:`Cache.begin` starts on a key."""

    LOOK = "look"  # look the key up first; compute only on a miss
    MISSED = "missed"  # the caller has just looked it up and missed: claim it at once
    FORCE = "force"  # compute anew whatever is stored; the new entry replaces the stored one
