"""What a hashing rule writes into (:class:`Node`), the steps and parts it yields,
and plain scalars, which every node encodes inline by value.

The walk that drives rules and remembers digests is :mod:`nbcache.keys.hashing`;
a node sees it only through :class:`Walker`.  A part met again in a cycle is
named by its place (:func:`within`).
"""

from __future__ import annotations

import array
import math
import struct
import sys
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import xxhash

__all__ = [
    "ATOMS",
    "BULK_ITEMS",
    "INLINE_BYTES",
    "INLINE_ITEMS",
    "NAN_BYTES",
    "Inline",
    "Node",
    "Parts",
    "Request",
    "Rule",
    "Step",
    "Unfed",
    "Walker",
    "address_range",
    "bulk_atoms",
    "encoded",
    "numpy",
    "sealed",
    "spelled",
    "tag_rows",
    "within",
]

_CHUNK = 1 << 22  # big buffers go to the hasher in 4 MiB slices, checking the clock
_INLINE = 1 << 16  # buffers above this skip the node's small byte buffer
_Q = struct.Struct("<Q").pack
_q = struct.Struct("<q").pack
_D = struct.Struct("<d").pack
_NAN = NAN_BYTES = b"\x7f\xf8" + b"\x00" * 6  # every NaN is written as this one
# Where ``id()`` values fall (8-aligned, see ``Walker.address``): ints outside
# this range are never taken for one, and cost one comparison more.
_ADDRESS_LOW, _ADDRESS_HIGH = (1 << 20, 1 << 48) if sys.maxsize > 1 << 32 else (1 << 16, 1 << 32)


def address_range() -> tuple[int, int]:
    """[low, high): where ``id()`` values fall; an 8-aligned int there may be one."""
    return _ADDRESS_LOW, _ADDRESS_HIGH


# A list, tuple or dict of fewer items than this, all plain scalars, encoded in at
# most this many bytes, is a small leaf: its parent takes its encoding in place
# of its digest (see :class:`Inline`).
INLINE_ITEMS = 32
INLINE_BYTES = 1 << 12
_LEAF_TYPES = frozenset({list, tuple, dict})  # exact types, as the batch sees them


class Inline(bytes):
    """A small leaf's own encoding, which its parent writes in place of its digest.

    Records (a tuple of an int and a str, a dict of one pair) are most of a big
    graph's objects; one XXH3 call each was half of its digest.  The encoding is
    self-delimiting (a container's tag, its count, then tagged scalars), so a
    parent's bytes still say where each part ends.  Whether a container is a
    small leaf depends on its content alone, never on how it is shared, so a
    shared leaf and an equal copy still write the same bytes; its size is
    bounded, so writing it once per reference keeps the work linear.  Where a
    part's digest is needed on its own (a set's items, the root, an id's
    referent) it is :func:`sealed`.
    """

    __slots__ = ()


def sealed(part: bytes) -> bytes:
    """A part's 16-byte digest: a small leaf's encoding hashed, a digest as it is."""
    if type(part) is Inline:
        return bytes(xxhash.xxh3_128_digest(part))
    return part


def within(walk: Any, key: int) -> bytes | None:
    """The digest of a part met again whose own pointed above it, or None (walk it again).

    Its digest said "n levels up", true only where it was made. Met elsewhere, it is
    the part at a place in a whole hashed already: ``walk.placed`` holds, for each such
    part, the part that held it, which of its parts it was, and the serials of both
    openings (a part walked again is opened again). Up to a part with a digest of its
    own, the place is a digest too; up to a part open in the opening the path was made
    in, a reference to it, so many levels up, and the path down. A place found is kept
    (``walk.paths``) and built on, so each part's place is found about once. Equal
    digests (or references) and paths hold equal content. None where a place is not
    known (a set's part) or was made in another opening: walk it again.
    """
    memo, opened, frames, paths = walk.memo, walk.open, walk.frames, walk.paths
    pending: list[tuple[int, bytes, int, int]] = []
    while True:
        if key in memo:
            anchor, serial, found, own = None, -1, memo[key], -1
            break
        depth = opened.get(key)
        if depth is not None:
            anchor, serial, found, own = key, frames[depth].serial, b"", frames[depth].serial
            break
        cached = paths.get(key)
        if cached is not None:
            if cached[0] in opened and frames[opened[cached[0]]].serial == cached[1]:
                anchor, serial, found, own = cached
                break
            pending.append((key, b"via\x00" + cached[2], cached[1], cached[3]))
            key = cached[0]
            continue
        place = walk.placed.get(key)
        if place is None:
            return None
        pending.append((key, b"within\x00" + _Q(place[1]), place[2], place[3]))
        key = place[0]
    for part, step, needed, part_own in reversed(pending):
        if anchor is not None and own != needed:
            return None  # made in another opening: its parts may not be written out there
        found = bytes(xxhash.xxh3_128_digest(step + found))
        own = part_own
        if anchor is None:
            memo[part] = found
        else:
            paths[part] = (anchor, serial, found, own)
    if anchor is None:
        return bytes(found)
    depth = opened[anchor]
    frames[-1].low = min(frames[-1].low, depth)
    return bytes(xxhash.xxh3_128_digest(b"at\x00" + _Q(len(frames) - depth) + found))


class Walker(Protocol):
    """What a node, and a rule encoding many items at once, ask of the walk they are part of."""

    typed: bool
    found: dict[int, Any]  # parts an int names, by that int (once they are known)
    refs: dict[int, bytes] | None  # set when ints that name parts are written as references
    seen: list[Any] | None  # strs and bytes met, which an int may name
    memo: dict[int, bytes]

    def check_clock(self) -> None: ...

    def address(self, n: Node, value: int) -> bool: ...

    def note_run(self, values: Any) -> None:
        """Note a numpy array of ints that may be ids, as ``address`` notes one."""

    def met_all(self, values: list[Any]) -> None:
        """Scalars met without a node (strs, bytes), which an int may name."""

    def entered(self, objects: list[Any]) -> None:
        """Objects hashed without a frame of the walk, as if each had been entered."""

    def remember(self, objects: list[Any], digests: list[bytes]) -> None:
        """Remember the objects' digests, as the walk remembers what it hashed itself."""


_np: Any = None


def numpy() -> Any:
    """numpy, or None where it is not installed (then everything goes item by item)."""
    global _np
    if _np is None:
        try:
            import numpy as np
        except ImportError:
            _np = False
        else:
            _np = np
    return _np or None


@dataclass(frozen=True)
class Unfed:
    """Yielded by a rule that wants a part's digest back without adding it (sets sort them).

    ``place``: where the rule writes it among the parts (a long list's hole: the item's
    index), so it says which part it is; -1 where the digests are sorted.
    """

    value: Any
    step: Step
    place: int = -1


# A step names a part inside its parent for error messages: an int is an index
# (``[3]``), a str is appended as it is (``.mask``), a 1-tuple holds a key
# (``['name']``).  Paths are only spelled out when something fails.
Step = int | str | tuple[Any]
Request = tuple[Any, Step] | Unfed
Parts = Generator[Request, bytes, None]  # what a rule yields: the parts it contains
Rule = Callable[["Node", Any], Parts | None]


def spelled(step: Step) -> str:
    """A step as a path shows it: ``[3]``, ``.mask``, ``['name']``."""
    if type(step) is int:
        return f"[{step}]"
    if type(step) is str:
        return step
    try:
        return f"[{step[0]!r}]"  # type: ignore[index]
    except Exception:  # noqa: BLE001 - a key whose repr fails is still a key
        return "[<key>]"


class Node:
    """The digest of one object in the making: rules add tags, bytes and parts' digests."""

    __slots__ = ("_buf", "_h", "_walk")

    def __init__(self, walk: Walker) -> None:
        self._walk = walk
        self._buf = bytearray()
        self._h: Any = None

    @property
    def typed(self) -> bool:
        return self._walk.typed

    @property
    def walker(self) -> Walker:
        return self._walk

    def tag(self, label: bytes) -> None:
        self._buf += label
        self._buf += b"\x00"

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        """Length-prefixed bytes; big buffers stream in slices under the budget's clock."""
        view = memoryview(data)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        self._buf += _Q(view.nbytes)
        if view.nbytes <= _INLINE:
            self._buf += view
            return
        if self._h is None:
            self._h = xxhash.xxh3_128()
        self._h.update(self._buf)
        self._buf = bytearray()
        for start in range(0, view.nbytes, _CHUNK):
            self._h.update(view[start : start + _CHUNK])
            self._walk.check_clock()

    def text(self, value: str) -> None:
        self.raw(value.encode("utf-8", "surrogatepass"))

    def count(self, n: int) -> None:
        self._buf += _q(n)

    def atom(self, value: Any) -> bool:
        """Add a plain scalar inline and return True; return False for anything else."""
        encode = ATOMS.get(type(value))
        if encode is None:
            return False
        encode(self, value)
        return True

    def atom_digest(self, value: Any) -> bytes | None:
        """The digest a plain scalar would have as a part of its own, or None."""
        encode = ATOMS.get(type(value))
        if encode is None:
            return None
        leaf = Node(self._walk)
        encode(leaf, value)
        return leaf.finish()

    def add(self, part: bytes | bytearray) -> None:
        """Add a part's 16-byte digest, or a small leaf's encoding (:class:`Inline`)."""
        self._buf += part

    def check_clock(self) -> None:
        """Raise HashBudgetError past the deadline: for rules that loop over big data."""
        self._walk.check_clock()

    def larger_than(self, size: int) -> bool:
        """Whether more than ``size`` bytes went in (a streamed buffer always did)."""
        return self._h is not None or len(self._buf) > size

    def inline(self, value: Any) -> Inline | None:
        """The bytes written for ``value``, a leaf (no parts), if it is a small leaf."""
        small = type(value) in _LEAF_TYPES and len(value) < INLINE_ITEMS
        if small and self._h is None and len(self._buf) <= INLINE_BYTES:
            return Inline(self._buf)
        return None

    def finish(self) -> bytes:
        if self._h is None:
            return bytes(xxhash.xxh3_128_digest(self._buf))
        self._h.update(self._buf)
        return bytes(self._h.digest())


def _atom_none(n: Node, value: None) -> None:
    n._buf += b"N"


def _atom_bool(n: Node, value: bool) -> None:
    if n.typed:
        n._buf += b"B\x01" if value else b"B\x00"
    else:
        _atom_int(n, int(value))


def _atom_int(n: Node, value: int) -> None:
    buf = n._buf
    if -(1 << 63) <= value < (1 << 63):
        if _ADDRESS_LOW <= value < _ADDRESS_HIGH and not value & 7 and n._walk.address(n, value):
            return
        buf += b"i"
        buf += _q(value)
        return
    # Bytes, not str(): int-to-str is quadratic and refused above 4300 digits.
    data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    buf += b"I"
    buf += _Q(len(data))
    buf += data


def _atom_float(n: Node, value: float) -> None:
    if not n.typed and value.is_integer() and not (value == 0 and math.copysign(1, value) < 0):
        _atom_int(n, int(value))
        return
    n._buf += b"F"
    n._buf += _NAN if math.isnan(value) else _D(value)


def _atom_complex(n: Node, value: complex) -> None:
    n._buf += b"C"
    for part in (value.real, value.imag):
        n._buf += _NAN if math.isnan(part) else _D(part)


def _atom_str(n: Node, value: str) -> None:
    seen = n._walk.seen
    if seen is not None:  # a str whose id() is kept as an int (sklearn's stop words)
        seen.append(value)
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > _INLINE:
        n._buf += b"S"
        n.raw(data)
        return
    buf = n._buf
    buf += b"S"
    buf += _Q(len(data))
    buf += data


def _atom_bytes(n: Node, value: bytes | bytearray) -> None:
    seen = n._walk.seen
    if seen is not None:
        seen.append(value)
    n._buf += b"Y" if type(value) is bytes else b"A"
    if len(value) > _INLINE:
        n.raw(value)
        return
    n._buf += _Q(len(value))
    n._buf += value


# Values hashed inline by value wherever they appear: no identity, no memo.
# Sharing one is unobservable (bytearray aside, whose aliasing keys ignore,
# as they ignore all aliasing: a key is about content).
ATOMS: Mapping[type, Callable[[Node, Any], None]] = {
    type(None): _atom_none,
    bool: _atom_bool,
    int: _atom_int,
    float: _atom_float,
    complex: _atom_complex,
    str: _atom_str,
    bytes: _atom_bytes,
    bytearray: _atom_bytes,
}


def encoded(walk: Walker, value: Any) -> bytes | None:
    """The bytes a plain scalar writes into a node of ``walk``; None if not a scalar or
    too long to hold as bytes."""
    encode = ATOMS.get(type(value))
    if encode is None:
        return None
    node = Node(walk)
    encode(node, value)
    return None if node._h is not None else bytes(node._buf)


# A list or tuple this long whose items are all of one scalar type is encoded in C.
BULK_ITEMS = 32


def bulk_atoms(
    n: Node,
    items: list[Any] | tuple[Any, ...],
    types: list[type] | None = None,
    alike: bool = False,
) -> bool:
    """Encode ``items``, all ints or all floats, in C; False, with nothing written, if not.

    The bytes are exactly those one encode per item writes, so the digest is the
    same: only the per-item work leaves Python.  Anything the walk must see item
    by item falls back (False): ints beyond 64 bits, floats when untyped (an
    integral float is written as an int then), an int the walk writes as a
    reference to a part.  ``types``, if given, is ``list(map(type, items))``;
    ``alike`` says the caller knows the items are all of one type.
    """
    if alike:
        kind = type(items[0]) if items else type(None)
    else:
        if types is None:
            types = list(map(type, items))
        kind = types[0] if types else type(None)
        if types.count(kind) != len(types):
            return False
    if kind is int:
        return _bulk_ints(n, items)
    if kind is float and n.typed:
        return _bulk_floats(n, items)
    return False  # strs: their lengths vary, and C gains nothing over one encode each


def _bulk_ints(n: Node, items: list[int] | tuple[int, ...]) -> bool:
    np = numpy()
    if np is None:
        return False
    try:
        values = np.frombuffer(array.array("q", items), dtype=np.int64)
    except OverflowError:
        return False
    if values.max() >= _ADDRESS_LOW and values.min() < _ADDRESS_HIGH:
        found = values[(values >= _ADDRESS_LOW) & (values < _ADDRESS_HIGH) & ((values & 7) == 0)]
        if found.size:  # what _atom_int does with each, as ``Walker.address`` says
            walk = n._walk
            if walk.refs is not None and not walk.found.keys().isdisjoint(found.tolist()):
                return False  # some are written as references: item by item
            walk.note_run(found)
    _tagged_cells(n, b"i", values.astype("<i8", copy=False))
    return True


def _bulk_floats(n: Node, items: list[float] | tuple[float, ...]) -> bool:
    np = numpy()
    if np is None:
        return False
    values = np.frombuffer(array.array("d", items), dtype=np.float64).astype("<f8", copy=False)
    nan = np.isnan(values)
    cells = values.view(np.uint8).reshape(-1, 8)
    if nan.any():  # every NaN is one NaN, as _atom_float writes it
        cells = cells.copy()
        cells[nan] = np.frombuffer(_NAN, dtype=np.uint8)
    _tagged_cells(n, b"F", cells)
    return True


def _tagged_cells(n: Node, tag: bytes, cells: Any) -> None:
    """``tag`` before each 8-byte cell (a row of ``cells``), appended to the node."""
    n._buf += tag_rows(numpy(), tag, cells).data


def tag_rows(np: Any, tag: bytes, cells: Any) -> Any:
    """``tag`` (one byte) before each 8-byte cell (a row of ``cells``): rows of 9 bytes."""
    rows = cells.view(np.uint8).reshape(-1, 8)
    out = np.empty(len(rows), np.dtype([("tag", "u1"), ("cell", "V8")]))  # packed: 9 bytes
    out["tag"] = tag[0]
    out["cell"] = rows.view("V8").ravel()
    return out.view(np.uint8).reshape(-1, 9)
