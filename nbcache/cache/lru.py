"""The one in-memory LRU: live values by key, least recently used dropped first.

Callers hold their own lock around compound steps; each method alone is one
``OrderedDict`` operation, so the hit path stays a dictionary lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``maxsize`` values (None: no limit), the least recently used dropped first."""

    __slots__ = ("_data", "maxsize")

    def __init__(self, maxsize: int | None) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value under ``key``, now the most recently used; None if absent."""
        data = self._data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if self.maxsize is not None:
            while len(data) > self.maxsize:
                data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)
