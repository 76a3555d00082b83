"""The one in-memory LRU: live values by key, least recently used dropped first.

Bounded by count and, when given ``max_bytes``, by the bytes it alone keeps alive.
Given ``large``, no part of a value that size or larger is kept alive by the LRU:
such a part is held through a weak reference, so once the user's own names let
go of it (``del a``) its memory is freed and the entry leaves the LRU (a later
lookup loads it from the store, or computes it again).  A large part that takes
no weak reference (a big list of numbers) is not kept at all.

Changes take a lock; a lookup takes none (one dictionary read and a move to the
end, which is atomic in CPython), so the hit path stays a dictionary lookup.
"""

from __future__ import annotations

import sys
import threading
import types
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..entry.format import EntryInfo

__all__ = ["HELD", "LRU", "MemoryUse", "weigh"]

K = TypeVar("K")
V = TypeVar("V")

# How many objects :func:`weigh` looks at in one value: a bound on the work of a put;
# a value with more parts is at least what was counted.
_WEIGH_OBJECTS = 10_000


_LEAVES = frozenset({str, bytes, int, float, bool, complex, type(None)})
# A header read from an entry counts by its JSON text's length, unwalked (walking a
# call's summary was half of what weighing cost a store hit): per byte, about what its
# parse takes (a memoized call's header of 619 bytes weighs 4,134 walked; its metadata
# 2,757 for 347).
_HEADER_WEIGHT = 8


def weigh(value: Any, limit: int = _WEIGH_OBJECTS) -> int:
    """The bytes ``value`` takes in memory, estimated: arrays and frames by their
    buffers (a view by its base's), containers and objects by their parts, at most
    ``limit`` objects seen (the parts not seen count as the average of those seen)."""
    seen: set[int] = set()
    todo = [value]
    total = 0
    numpy, pandas = sys.modules.get("numpy"), sys.modules.get("pandas")
    getsizeof = sys.getsizeof
    while todo and len(seen) < limit:
        obj = todo.pop()
        if (ident := id(obj)) in seen:
            continue
        seen.add(ident)
        # Plain builtins by their exact type first, counted as the general checks below
        # would: metadata (an entry's header, a call's summary) is dozens of them.
        kind = type(obj)
        if kind in _LEAVES:
            total += getsizeof(obj, 0)
            continue
        if kind is EntryInfo and obj.header_size:  # read from an entry: by its length
            total += getsizeof(obj, 0) + _HEADER_WEIGHT * obj.header_size
            continue
        if kind is dict or kind is list or kind is tuple:
            total += getsizeof(obj, 0)
            todo.extend(obj)  # a dict's keys, then its values
            if kind is dict:
                todo.extend(obj.values())
            continue
        if numpy is not None and isinstance(obj, numpy.ndarray):
            total += _array_bytes(numpy, obj, seen)
            continue
        if pandas is not None and isinstance(obj, (pandas.DataFrame, pandas.Series)):
            total += _frame_bytes(obj)
            continue
        total += sys.getsizeof(obj, 0)
        if isinstance(obj, (str, bytes, bytearray, int, float, complex, type, types.ModuleType)):
            continue
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            todo.extend(obj)
        else:
            try:
                attributes = object.__getattribute__(obj, "__dict__")
            except (AttributeError, TypeError):
                continue
            if isinstance(attributes, dict):
                todo.extend(attributes.values())
    if todo:
        # Out of budget: what is left counts as the average of what was seen, so a long
        # list of small objects is not taken for a small value.
        total += len(todo) * (total // len(seen))
    return total


def _array_bytes(numpy: Any, array: Any, seen: set[int]) -> int:
    """An array's bytes: a view keeps its whole base alive, which is what it costs to hold
    it (counted once, with the first view seen)."""
    root = array
    while isinstance(root.base, numpy.ndarray):
        root = root.base
    if root is array:
        return int(array.nbytes)
    if id(root) in seen:
        return 0
    seen.add(id(root))
    return max(int(root.nbytes), int(array.nbytes)) + sys.getsizeof(array, 0)


def _frame_bytes(frame: Any) -> int:
    try:
        used = frame.memory_usage(index=True, deep=False)
        return int(used.sum() if hasattr(used, "sum") else used)
    except Exception:  # noqa: BLE001 - a frame that cannot say: its object's own size
        return sys.getsizeof(frame, 0)


# -- holding a value without keeping its large parts alive -----------------------------

_GONE = object()


class _Weak:
    __slots__ = ("nbytes", "ref")

    def __init__(self, ref: weakref.ref[Any], nbytes: int) -> None:
        self.ref = ref
        self.nbytes = nbytes


class _Rebuilt:
    """A plain dict, list or tuple of held parts, made again on each look."""

    __slots__ = ("kind", "parts")

    def __init__(self, kind: type, parts: Any) -> None:
        self.kind = kind
        self.parts = parts


def _take(held: Any) -> Any:
    """The value ``held`` stands for, or _GONE when a weakly held part was freed."""
    if isinstance(held, _Weak):
        value = held.ref()
        return _GONE if value is None else value
    if isinstance(held, _Rebuilt):
        if held.kind is dict:
            out: dict[Any, Any] = {}
            for key, part in held.parts:
                value = _take(part)
                if value is _GONE:
                    return _GONE
                out[key] = value
            return out
        items = []
        for part in held.parts:
            value = _take(part)
            if value is _GONE:
                return _GONE
            items.append(value)
        return items if held.kind is list else tuple(items)
    return held


# What _take must turn back into the value, by exact type (neither is subclassed): a set
# look-up is a quarter of what isinstance with a tuple costs an in-memory hit.
HELD = frozenset({_Weak, _Rebuilt})


class _Holding:
    """What one put holds: strong parts and their bytes, weak parts and theirs."""

    def __init__(self, large: int, on_freed: Callable[[Any], None]) -> None:
        self.large = large
        self.on_freed = on_freed
        self.strong = 0
        self.weak = 0

    def hold(self, value: Any, depth: int = 0) -> Any:
        """``value`` as kept: itself, a weak reference, or a container rebuilt from its
        parts; raises _Unholdable when it cannot be kept without keeping a large part
        alive."""
        nbytes = weigh(value)
        if nbytes < self.large:
            self.strong += nbytes
            return value
        try:
            ref = weakref.ref(value, self.on_freed)
        except TypeError:
            pass
        else:
            self.weak += nbytes
            return _Weak(ref, nbytes)
        if type(value) not in (dict, list, tuple) or depth >= 4:
            raise _Unholdable
        before = self.strong
        parts: Any
        if type(value) is dict:
            parts = [(key, self.hold(part, depth + 1)) for key, part in value.items()]
        else:
            parts = [self.hold(part, depth + 1) for part in value]
        if self.strong - before >= self.large:
            raise _Unholdable  # many small parts, large together: the same memory
        self.strong += sys.getsizeof(value, 0)
        return _Rebuilt(type(value), parts)


class _Unholdable(Exception):
    """A value with a large part that takes no weak reference."""


@dataclass(frozen=True)
class MemoryUse:
    """What a memory layer holds now: how many values, the bytes it alone keeps alive
    (and its bounds), and the bytes of large values it holds only while the user does."""

    values: int
    kept_bytes: int
    max_items: int | None
    max_bytes: int | None
    large: int | None
    weak_values: int
    weak_bytes: int


class _Slot:
    __slots__ = ("held", "strong", "weak")

    def __init__(self, held: Any, strong: int, weak: int) -> None:
        self.held = held
        self.strong = strong
        self.weak = weak


class LRU(Generic[K, V]):
    """At most ``maxsize`` values (None: no limit), the least recently used dropped first.

    ``max_bytes`` bounds the bytes the LRU alone keeps alive (None: no bound); parts
    of ``large`` bytes or more are held only while something else holds them too
    (None: every value is held as it is).
    """

    __slots__ = ("_bytes", "_data", "_freed", "_lock", "large", "max_bytes", "maxsize")

    def __init__(
        self, maxsize: int | None, *, max_bytes: int | None = None, large: int | None = None
    ) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.large = large if large is None or max_bytes is None else min(large, max_bytes)
        self._data: OrderedDict[K, _Slot] = OrderedDict()
        self._bytes = 0
        # Keys whose weakly held part was freed: appended by the garbage collector's
        # callback, which must take no lock (it may run inside a locked change).
        self._freed: deque[tuple[K, _Slot]] = deque()
        self._lock = threading.Lock()  # for changes; a lookup takes none

    @property
    def slots(self) -> OrderedDict[K, Any]:
        """The slots by key, least recently used first, for a hit path that cannot afford
        :meth:`get`'s call (a tenth of a memoized hit). Read-only: a slot from
        ``slots.get(key)`` whose ``held`` is not of a type in :data:`HELD` holds the value
        itself, and ``slots.move_to_end(key)`` (a KeyError: another thread dropped it
        meanwhile) makes it the most recent, which is all :meth:`get` does for it; any
        other slot is read through :meth:`get`."""
        return self._data

    def get(self, key: K) -> V | None:
        """The value under ``key``, now the most recently used; None if absent."""
        data = self._data
        slot = data.get(key)
        if slot is None:
            return None
        value = slot.held
        if type(value) in HELD:  # held weakly or rebuilt: the common case needs no call
            value = _take(value)
            if value is _GONE:
                self._drop(key, slot)
                return None
        try:
            data.move_to_end(key)
        except KeyError:
            pass  # another thread dropped it meanwhile; the value is still good
        return value  # type: ignore[no-any-return]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, unless it alone is over the byte bound or has a
        large part that cannot be held weakly (then whatever was under ``key`` goes)."""
        slot = self._slot(key, value)
        with self._lock:
            self._purge()
            data = self._data
            old = data.pop(key, None)
            if old is not None:
                self._bytes -= old.strong
            if slot is None:
                return
            data[key] = slot
            self._bytes += slot.strong
            while len(data) > 1 and (
                (self.maxsize is not None and len(data) > self.maxsize)
                or (self.max_bytes is not None and self._bytes > self.max_bytes)
            ):
                _, dropped = data.popitem(last=False)
                self._bytes -= dropped.strong
            if self.maxsize is not None and len(data) > self.maxsize:
                data.popitem(last=False)  # a maxsize of 0 keeps nothing

    def _slot(self, key: K, value: V) -> _Slot | None:
        if self.large is None and self.max_bytes is None:
            return _Slot(value, 0, 0)
        if self.large is None:
            nbytes = weigh(value)
            return _Slot(value, nbytes, 0) if nbytes <= self.max_bytes else None  # type: ignore[operator]
        freed = self._freed
        slot = _Slot(None, 0, 0)

        def on_freed(_ref: Any) -> None:
            freed.append((key, slot))

        holding = _Holding(self.large, on_freed)
        try:
            slot.held = holding.hold(value)
        except _Unholdable:
            return None
        slot.strong, slot.weak = holding.strong, holding.weak
        if self.max_bytes is not None and slot.strong > self.max_bytes:
            return None
        return slot

    def _drop(self, key: K, slot: _Slot) -> None:
        with self._lock:
            if self._data.get(key) is slot:
                del self._data[key]
                self._bytes -= slot.strong

    def _purge(self) -> None:
        """Forget entries whose weakly held parts were freed (the lock is held)."""
        while self._freed:
            key, slot = self._freed.popleft()
            if self._data.get(key) is slot:
                del self._data[key]
                self._bytes -= slot.strong

    def pop(self, key: K) -> V | None:
        with self._lock:
            self._purge()
            slot = self._data.pop(key, None)
            if slot is None:
                return None
            self._bytes -= slot.strong
        value = _take(slot.held)
        return None if value is _GONE else value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._freed.clear()
            self._bytes = 0

    def use(self) -> MemoryUse:
        """What the LRU holds now."""
        with self._lock:
            self._purge()
            slots = list(self._data.values())
            kept = self._bytes
        weak = [s for s in slots if s.weak]
        return MemoryUse(
            len(slots),
            kept,
            self.maxsize,
            self.max_bytes,
            self.large,
            len(weak),
            sum(s.weak for s in weak),
        )

    def __len__(self) -> int:
        if self._freed:
            with self._lock:
                self._purge()
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))
