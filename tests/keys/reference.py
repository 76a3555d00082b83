"""A reference digest for plain data, one Python step per item, and a corpus of graphs.

``reference_digest`` writes the bytes of the hashing rules for scalars, lists,
tuples, dicts, sets and frozensets the simple way: recursively, item by item,
each container's digest made once (by identity), a small leaf's encoding
written in its parent.  The package encodes the same bytes through faster
paths; the tests hold the two equal.  ``corpus`` builds the same values in
every process (a seeded ``random.Random``), so digests of it made by an
earlier version of the package can be kept as fixtures.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import xxhash

__all__ = ["corpus", "reference_digest"]

_NAN = b"\x7f\xf8" + b"\x00" * 6
_HASH_VERSION = 3
_INLINE_ITEMS = 32  # a small leaf: fewer items than this, all scalars,
_INLINE_BYTES = 1 << 12  # encoded in at most this many bytes: written in place


def _h(data: bytes) -> bytes:
    return bytes(xxhash.xxh3_128_digest(data))


def _atom(value: Any, typed: bool) -> bytes | None:
    kind = type(value)
    if value is None:
        return b"N"
    if kind is bool:
        if typed:
            return b"B\x01" if value else b"B\x00"
        return _atom(int(value), typed)
    if kind is int:
        if -(1 << 63) <= value < (1 << 63):
            return b"i" + struct.pack("<q", value)
        data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
        return b"I" + struct.pack("<Q", len(data)) + data
    if kind is float:
        if not typed and value.is_integer() and not (value == 0 and math.copysign(1, value) < 0):
            return _atom(int(value), typed)
        return b"F" + (_NAN if math.isnan(value) else struct.pack("<d", value))
    if kind is complex:
        parts = (value.real, value.imag)
        return b"C" + b"".join(_NAN if math.isnan(p) else struct.pack("<d", p) for p in parts)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        return b"S" + struct.pack("<Q", len(data)) + data
    if kind in (bytes, bytearray):
        tag = b"Y" if kind is bytes else b"A"
        return tag + struct.pack("<Q", len(value)) + bytes(value)
    return None


def _leaf(value: Any, typed: bool) -> bytes | None:
    """A small leaf's encoding, which its parent writes in place of its digest; else None."""
    kind = type(value)
    if kind not in (list, tuple, dict) or len(value) >= _INLINE_ITEMS:
        return None
    if kind is dict:
        items = [x for pair in value.items() for x in pair]
        buf = b"dict\x00"
    else:
        items = list(value)
        buf = b"list\x00" if kind is list else b"tuple\x00"
    atoms = [_atom(item, typed) for item in items]
    if any(atom is None for atom in atoms):
        return None
    buf += struct.pack("<q", len(value)) + b"".join(atoms)  # type: ignore[arg-type]
    return buf if len(buf) <= _INLINE_BYTES else None


def _part(value: Any, typed: bool, memo: dict[int, bytes]) -> bytes:
    """An object's own 16-byte digest (a scalar's: of its encoding alone)."""
    inline = _atom(value, typed)
    if inline is None:
        inline = _leaf(value, typed)
    if inline is not None:
        return _h(inline)
    known = memo.get(id(value))
    if known is not None:
        return known
    kind = type(value)
    if kind in (list, tuple):
        buf = (b"list\x00" if kind is list else b"tuple\x00") + struct.pack("<q", len(value))
        buf += b"".join(_inline_or_part(item, typed, memo) for item in value)
    elif kind is dict:
        buf = b"dict\x00" + struct.pack("<q", len(value))
        for key, item in value.items():
            buf += _inline_or_part(key, typed, memo) + _inline_or_part(item, typed, memo)
    elif kind in (set, frozenset):
        parts = sorted(_part(item, typed, memo) for item in value)
        buf = (b"set\x00" if kind is set else b"frozenset\x00") + struct.pack("<q", len(parts))
        buf += b"".join(parts)
    else:
        raise TypeError(f"the reference digests plain data only, not {kind.__name__}")
    memo[id(value)] = result = _h(buf)
    return result


def _inline_or_part(value: Any, typed: bool, memo: dict[int, bytes]) -> bytes:
    inline = _atom(value, typed)
    if inline is None:
        inline = _leaf(value, typed)
    return inline if inline is not None else _part(value, typed, memo)


def reference_digest(value: Any, typed: bool = True) -> str:
    """What ``nbcache.keys.digest(value, typed=typed)`` gives for plain data, computed simply."""
    root = _part(value, typed, {})
    return str(xxhash.xxh3_128_hexdigest(b"nbcache-hash/%d\x00" % _HASH_VERSION + root))


# -- a corpus of graphs ---------------------------------------------------------------

_ADDRESS_LIKE = 1 << 21


def _scalar(rng: random.Random) -> Any:
    pick = rng.randrange(14)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.randint(-5, 5)
    if pick == 3:
        return rng.randint(-(2**63), 2**63 - 1)
    if pick == 4:
        return _ADDRESS_LIKE + 8 * rng.randrange(1 << 20)  # an id's range and alignment
    if pick == 5:
        return rng.choice([2**63, -(2**63) - 1, 3**50, -(7**40)])
    if pick == 6:
        return rng.choice([0.0, -0.0, math.nan, -math.nan, math.inf, 1.0, 2.5, 1e300])
    if pick == 7:
        return rng.uniform(-1e6, 1e6)
    if pick == 8:
        return complex(rng.random(), rng.choice([0.0, math.nan, -1.5]))
    if pick == 9:
        return "".join(rng.choice("ab\x00é€\U0001f600") for _ in range(rng.randrange(6)))
    if pick == 10:
        return rng.choice(["", "\ud800", "k" * 70, "x\udcff"])
    if pick == 11:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(5)))
    if pick == 12:
        return bytearray(b"\x00" * rng.randrange(3))
    return f"s{rng.randrange(1000)}"


def _key(rng: random.Random) -> Any:
    """A hashable scalar, for dict keys and set items."""
    while True:
        value = _scalar(rng)
        if type(value) is not bytearray:
            return value


def _run(rng: random.Random, size: int) -> list[Any]:
    """A long run: of one scalar type, of ids' range, or mixed."""
    kind = rng.randrange(6)
    if kind == 0:
        return [rng.randint(-(2**40), 2**40) for _ in range(size)]
    if kind == 1:
        return [_ADDRESS_LIKE + 8 * rng.randrange(1 << 16) for _ in range(size)]
    if kind == 2:
        return [rng.choice([0.5, -0.0, math.nan, 1.0, 3.0]) for _ in range(size)]
    if kind == 3:
        return [f"w{rng.randrange(50)}" for _ in range(size)]
    if kind == 4:
        return [rng.choice([True, False, 1, 0, 1.0, None]) for _ in range(size)]
    return [_scalar(rng) for _ in range(size)]


def _value(rng: random.Random, depth: int, pool: list[Any]) -> Any:
    if pool and rng.random() < 0.15:
        return rng.choice(pool)  # a shared part
    if depth <= 0 or rng.random() < 0.3:
        return _scalar(rng)
    pick = rng.randrange(9)
    size = rng.choice([0, 1, 2, 3, 5, 8, 31, 32, 40, 100])
    if pick == 0:
        made: Any = [_value(rng, depth - 1, pool) for _ in range(size)]
    elif pick == 1:
        made = tuple(_value(rng, depth - 1, pool) for _ in range(size))
    elif pick == 2:
        made = {_key(rng) if rng.random() < 0.9 else (1, "k"): _value(rng, depth - 1, pool)}
        for _ in range(size):
            key = rng.choice([f"k{rng.randrange(99)}", rng.randrange(99), (rng.randrange(9),)])
            made[key] = _value(rng, depth - 1, pool)
    elif pick == 3:
        made = rng.choice([set, frozenset])(
            rng.choice([_key(rng), (rng.randrange(5), "t"), frozenset({rng.randrange(3)})])
            for _ in range(size)
        )
    elif pick == 4:
        made = _run(rng, rng.choice([32, 33, 64, 200]))
        if rng.random() < 0.5:
            made = tuple(made)
    elif pick == 5:  # records: many small leaves, as a table held in lists
        made = [
            rng.choice(
                [
                    (rng.randrange(1000, 2000), f"s{i}"),
                    {f"k{i}": rng.randrange(1000, 2000)},
                    [rng.random(), None],
                    (),
                    {},
                    (i, (i,)),
                    {"a": i, "b": [i]},
                    _scalar(rng),
                ]
            )
            for i in range(rng.choice([1, 40, 300]))
        ]
    elif pick == 6:  # a run with objects among its scalars
        made = _run(rng, rng.choice([32, 100]))
        for _ in range(rng.randrange(1, 4)):
            made.insert(rng.randrange(len(made) + 1), _value(rng, depth - 1, pool))
    elif pick == 7:  # many leaves shared between rows
        leaf = (rng.randrange(5), "shared")
        made = [leaf if rng.random() < 0.5 else (rng.randrange(5), "own") for _ in range(64)]
    else:
        made = {f"r{i}": (i, float(i), str(i)) for i in range(rng.choice([3, 50]))}
    pool.append(made)
    return made


def corpus(seed: int = 20261207, count: int = 300) -> list[Any]:
    """``count`` plain-data values, the same in every process: nested, shared, long runs."""
    rng = random.Random(seed)
    values = []
    for _ in range(count):
        pool: list[Any] = []
        values.append(_value(rng, rng.randrange(1, 5), pool))
    return values
