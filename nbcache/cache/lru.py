"""The one in-memory LRU: live values by key, least recently used dropped first.

Changes take a lock; a lookup takes none (one dictionary read and a move to the
end, which is atomic in CPython), so the hit path stays a dictionary lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``maxsize`` values (None: no limit), the least recently used dropped first."""

    __slots__ = ("_data", "_lock", "maxsize")

    def __init__(self, maxsize: int | None) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()  # for changes; a lookup takes none

    def get(self, key: K) -> V | None:
        """The value under ``key``, now the most recently used; None if absent."""
        data = self._data
        value = data.get(key)
        if value is not None:
            try:
                data.move_to_end(key)
            except KeyError:
                pass  # another thread dropped it meanwhile; the value is still good
        return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            data = self._data
            data[key] = value
            data.move_to_end(key)
            if self.maxsize is not None:
                while len(data) > self.maxsize:
                    data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)
