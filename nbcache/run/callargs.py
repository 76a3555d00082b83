"""A memoized call's arguments: a dict key for plain scalars and tuples of them as given
(the path a hit takes without hashing anything), bound by name without inspect where the
signature is plain, the call's key with its summary made when asked, and the call as a
listing shows it.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..keys.calls import bind_arguments, call_digests, call_summary
from ..keys.code import Fingerprint, identity, short_name
from ..keys.node import address_range

R = TypeVar("R")

__all__ = [
    "EXACT",
    "SCALARS",
    "Binder",
    "Call",
    "call_of",
    "call_text",
    "fast_key",
    "scalar_key",
]

SCALARS = frozenset({int, str, bytes, bool, type(None), float})
# Types whose equal values are of the same type among themselves (1 == True == 1.0 are
# not, so bool and float are left out): arguments of these alone key as they are, as
# typed keys would, without their types. A typed key holds types, which these never
# are, so the two never meet in one dictionary.
EXACT = frozenset({int, str, bytes, type(None)})
_SCALARS_LEFT = (bytes, bool, type(None))  # compared by identity: a type may be unhashable
# A tuple argument keys the shortcut as given up to this many items: the shortcut's dict
# holds its keys alive, and hashing a long one is the work the shortcut saves.
_TUPLE_ITEMS = 32
_ADDRESS_LOW, _ADDRESS_HIGH = address_range()
_KWARGS = object()

_SHORT = reprlib.Repr()  # a call's arguments as a listing shows them
_SHORT.maxstring = _SHORT.maxother = 24
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4


def _short(value: Any) -> str:
    """``value``'s repr cut short; its type's name when its repr fails (a listing's
    words are never worth a call that runs uncached)."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and not isinstance(value, type):  # arrays, frames
        return f"<{type(value).__name__} {'x'.join(str(n) for n in shape)}>"
    if isinstance(value, (bytes, bytearray, memoryview)):  # whose repr is the whole value
        return f"<{type(value).__name__} of {len(value)}>"
    try:
        return " ".join(_SHORT.repr(value).split())
    except Exception:  # noqa: BLE001 - a user's __repr__ may raise anything
        return f"<{type(value).__name__}>"


class Call:
    """A memoized call's key, and its summary (for listings and "why") made when first
    asked: a hit never asks, a miss asks before the function runs (it may change its
    arguments)."""

    __slots__ = ("_make", "_summary", "key")

    def __init__(self, key: str, make: Callable[[], dict[str, Any]]) -> None:
        self.key = key
        self._make = make
        self._summary: dict[str, Any] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = self._make()
        return self._summary

    def settle(self) -> None:
        """Make the summary now, from the arguments as they are now."""
        if self._summary is None:
            self._summary = self._make()

    def settled(self, compute: Callable[[], R]) -> Callable[[], R]:
        """``compute``, making the summary first: on a miss the arguments are described
        before the function may change them."""

        def run() -> R:
            self.settle()
            return compute()

        return run


def call_of(
    fn: Any,
    fingerprint: Fingerprint,
    arguments: dict[str, Any],
    given: tuple[tuple[Any, ...], dict[str, Any]],
    typed: bool,
    ignore: Iterable[str],
) -> Call:
    """The call's key now, its summary when asked; ``given`` is the call's arguments as
    written, shown in listings.

    Raises:
        KeyPicklingError: an argument cannot be hashed; the message names it.
    """
    key, digests = call_digests(fn, fingerprint, arguments, typed=typed, ignore=ignore)

    def summary() -> dict[str, Any]:
        return {
            **call_summary(fn, fingerprint, arguments, digests),
            # The call as the user wrote it, for listings: the browser's code column.
            "call": call_text(short_name(identity(fn)), *given),
        }

    return Call(key, summary)


_PLAIN_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Binder:
    """A call's arguments bound to the signature by name, defaults applied.

    ``Signature.bind`` walks the parameters in Python on every call; a function whose
    parameters are all positional (no ``*args``, ``**kwargs`` or keyword-only ones),
    called without keywords, binds by zipping, with the same result.
    """

    def __init__(self, signature: inspect.Signature) -> None:
        self._signature = signature
        parameters = list(signature.parameters.values())
        self._plain = all(p.kind in _PLAIN_KINDS for p in parameters)
        self._names = tuple(p.name for p in parameters)
        self._defaults = tuple(p.default for p in parameters)

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by name, as :func:`~nbcache.keys.calls.bind_arguments` gives.

        Raises:
            TypeError: they do not fit the signature.
        """
        bound = None if kwargs or not self._plain else self._zipped(args)
        return bind_arguments(self._signature, args, kwargs) if bound is None else bound

    def _zipped(self, args: tuple[Any, ...]) -> dict[str, Any] | None:
        """None when inspect must decide (too many arguments, or one missing: it raises)."""
        names = self._names
        if len(args) > len(names):
            return None
        arguments = dict(zip(names, args, strict=False))  # fewer args: defaults follow
        for index in range(len(args), len(names)):
            default = self._defaults[index]
            if default is inspect.Parameter.empty:
                return None
            arguments[names[index]] = default
        return arguments


def fast_key(args: tuple[Any, ...], kwargs: dict[str, Any], typed: bool) -> Any:
    """A dict key for plain scalar arguments as given, or None to go by content."""
    if not kwargs:  # the common case
        # A loop: frozenset.issuperset of an iterator builds a set of it first, which
        # took twice the time of the whole check for a call of two arguments.
        try:
            for arg in args:
                if type(arg) not in EXACT:
                    return scalar_key(args, typed)
        except TypeError:  # a class whose metaclass makes it unhashable
            return None
        return args
    values = (*args, *kwargs.values())
    for value in values:
        kind = type(value)
        if not (kind is int or kind is str or kind is float or kind in _SCALARS_LEFT):
            return None
        if kind is float and value == 0.0:
            return None  # -0.0 == 0.0, yet they can give different results
    key: tuple[Any, ...] = args if not kwargs else (*args, _KWARGS, *kwargs.items())
    if typed:
        key = (*key, *(type(value) for value in values))
    return key


def scalar_key(args: tuple[Any, ...], typed: bool) -> Any:
    """:func:`fast_key` of positional arguments, one of them not of an ``EXACT`` type:
    plain scalars, and tuples of them (with their items' types, whatever ``typed``)."""
    tuples = False
    try:
        for arg in args:
            kind = type(arg)
            if kind is tuple:
                if not _plain_tuple(arg):
                    return None
                tuples = True
            elif kind not in SCALARS:
                return None
            elif kind is float and arg == 0.0:
                return None  # -0.0 == 0.0, yet they can give different results
    except TypeError:  # a class whose metaclass makes it unhashable
        return None
    if not tuples:
        return args + tuple(map(type, args)) if typed else args
    # (1, 2) == (1.0, True): a tuple keys with its items' types, as a tuple of them
    # (never equal to a type, nor to a scalar), so calls it joins have one content key.
    kinds: list[Any] = []
    for arg in args:
        kinds.append(tuple(map(type, arg)) if type(arg) is tuple else type(arg))
    return args + tuple(kinds)


def _plain_tuple(items: tuple[Any, ...]) -> bool:
    """Whether equal tuples like ``items`` (items of the same types) have one content key.

    A tuple is hashed by a walk, which takes an int that may be the ``id()`` of a part
    for a reference to that part (see ``nbcache.keys.hashing``): two equal tuples could
    key apart, so such an int leaves the tuple to go by content, as does a float zero.
    """
    if len(items) > _TUPLE_ITEMS:
        return False
    for item in items:
        kind = type(item)
        if kind is int:
            if _ADDRESS_LOW <= item < _ADDRESS_HIGH and not item & 7:
                return False
        elif kind is float:
            if item == 0.0:
                return False
        elif kind not in SCALARS:
            return False
    return True


def call_text(function: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``f(3, n=2)`` for a call of ``function`` (its short name): each argument's repr cut
    short, the whole at most 80 characters."""
    parts = [_short(value) for value in args]
    parts += [f"{name}={_short(value)}" for name, value in kwargs.items()]
    text = f"{function}({', '.join(parts)})"
    return text if len(text) <= 80 else text[:78] + "…)"
