"""The in-memory hit's shortcut key, the arguments as given: what a hit calls, bounded
call by call, and a shortcut never joining calls whose content keys differ."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nbcache import memoize
from nbcache.cache.core import Cache
from nbcache.keys.hashing import digest
from nbcache.keys.node import address_range
from nbcache.run.callargs import fast_key

# More calls than a fingerprint's checks run from their list before they are compiled.
_MANY = 40
# What an in-memory hit calls, Python or C: the compiled checks, the shortcut's dict,
# the LRU's slots (read and moved to the end without a call of LRU.get), the counter.
# ``type`` and ``len`` are left out: whether a profiler sees them depends on the
# interpreter's specialisation.
_HIT = [
    "Memoized.__call__",
    "valid",
    "dict.get",
    "OrderedDict.get",
    "OrderedDict.move_to_end",
    "next",
]


def _calls(fn: Any, *args: Any) -> list[str]:
    """The functions a call of ``fn`` enters, Python and C, in order."""
    seen: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen.append(frame.f_code.co_qualname)
        elif event == "c_call":
            seen.append(getattr(arg, "__qualname__", repr(arg)))

    sys.setprofile(profile)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return [name for name in seen if name not in ("type", "len", "setprofile")]


def _warm(fn: Any, *args: Any) -> None:
    for _ in range(_MANY):
        fn(*args)
    assert not isinstance(fn._fp.valid, type(fn._fp.still_valid)), "checks not compiled"


def test_a_hit_calls_only_the_checks_the_dicts_and_the_counter(cache: Cache) -> None:
    """A hit of plain arguments builds no set, iterator or key: each call it makes is
    named, and made once; a float or a tuple of scalars adds only its typed key."""
    ns: dict[str, Any] = {"memoize": memoize, "cache": cache}
    exec(
        "SCALE = 3\n"
        "def helper(x):\n    return x * SCALE\n"
        "@memoize(cache=cache)\n"
        "def work(a, b):\n    return helper(a) + b if type(a) is int else b\n",
        ns,
    )
    work = ns["work"]
    for args, extra in (
        ((1, 2), []),
        (("a", None), []),
        ((1.5, True), ["scalar_key"]),
        # one look at the tuple's items, and each argument's types kept
        (((3, 4), 2), ["scalar_key", "_plain_tuple", "list.append", "list.append"]),
        ((("x", 2.5, None), b"b"), ["scalar_key", "_plain_tuple", "list.append", "list.append"]),
    ):
        _warm(work, *args)
        assert sorted(_calls(work, *args)) == sorted(_HIT + extra), args
    hits, misses = work.cache_info()[:2]
    assert misses == 5 and hits == 5 * _MANY


def test_tuples_of_scalars_key_apart_by_their_items_types(cache: Cache) -> None:
    """(1, 2), (1.0, 2) and (True, 2) are equal tuples and three entries; a tuple holding
    a float zero, or an int that may be the id of a part, goes by content."""

    @memoize(cache=cache)
    def echo(t: Any) -> str:
        return repr(t)

    text = "".join(["par", "t"])  # a str of its own, its id an int the tuple holds
    for value in ((1, 2), (1.0, 2), (True, 2), (0.0,), (-0.0,), (text, id(text)), ()):
        for _ in range(3):
            assert echo(value) == repr(value)
    assert echo.cache_info()[:2] == (14, 7)
    assert fast_key(((0.0,),), {}, True) is None
    assert fast_key(((text, id(text)),), {}, True) is None
    assert fast_key((((1,),),), {}, True) is None  # nested: by content


_LOW, _HIGH = address_range()
_ID_LIKE = st.integers(_LOW >> 3, (_HIGH >> 3) - 1).map(lambda n: n << 3)
_SCALAR = st.one_of(
    st.integers(-(2**70), 2**70),
    _ID_LIKE,
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=4),
)


@st.composite
def _item(draw: Any) -> Any:
    """A scalar, a tuple of them (sometimes holding the id of one of its own strs), or a
    nested tuple."""
    kind = draw(st.sampled_from(["scalar", "tuple", "tuple with an id", "nested"]))
    if kind == "scalar":
        return draw(_SCALAR)
    if kind == "nested":
        return (tuple(draw(st.lists(_SCALAR, max_size=2))),)
    items = draw(st.lists(_SCALAR, max_size=4))
    if kind == "tuple with an id":
        part = "".join(["s", str(len(items))]) * 3
        items += [part, id(part)]
    return tuple(items)


def _twin(value: Any, pick: Any) -> Any:
    """A value equal to ``value``: maybe of other types (1, True, 1.0; 0.0, -0.0), its
    strs and tuples other objects."""
    kind = type(value)
    if kind is tuple:
        return tuple(_twin(item, pick) for item in value)
    if kind is str:
        return "".join(list(value)) if len(value) > 1 else value
    if kind in (int, bool) and abs(value) < 2**53:
        return pick([value, int(value), float(value)] + ([bool(value)] if value in (0, 1) else []))
    if kind is float and value == value and value.is_integer() and abs(value) < 2**53:
        return pick([value, int(value), -value if value == 0 else value])
    return value


@settings(max_examples=400, deadline=None)
@given(st.lists(_item(), min_size=1, max_size=3), st.booleans(), st.data())
def test_calls_one_shortcut_joins_have_one_content_key(
    args: list[Any], typed: bool, data: Any
) -> None:
    """The shortcut maps a key to the content key of the first call that made it: two
    calls with one shortcut key must have one content key, argument by argument."""
    first = tuple(args)
    second = tuple(
        _twin(value, lambda options: data.draw(st.sampled_from(options))) for value in args
    )
    key = fast_key(first, {}, typed)
    if key is None or key != fast_key(second, {}, typed):
        return
    assert [digest(a, typed=typed) for a in first] == [digest(b, typed=typed) for b in second]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.integers(1, 4))
def test_hits_keep_the_memory_in_exact_lru_order(calls: list[int], maxsize: int) -> None:
    """A hit moves its entry to the end as LRU.get does: after every call, the entries in
    memory are those of an OrderedDict LRU of the same size, in the same order."""

    @memoize(maxsize=maxsize, store=False)
    def square(n: int) -> int:
        return n * n

    reference: OrderedDict[int, None] = OrderedDict()
    by_key: dict[str, int] = {}
    for n in calls:
        hits = square.cache_info().hits
        assert square(n) == n * n
        assert (square.cache_info().hits > hits) == (n in reference)
        if n in reference:
            reference.move_to_end(n)
        else:
            reference[n] = None
            if len(reference) > maxsize:
                reference.popitem(last=False)
        by_key[list(square._memory)[-1]] = n  # whatever the call, its entry is the newest
        assert [by_key[key] for key in square._memory] == list(reference)
