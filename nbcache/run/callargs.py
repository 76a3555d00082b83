"""A memoized call's arguments: a dict key for plain scalars as given (the path a hit
takes without hashing anything), bound by name without inspect where the signature is
plain, the call's key with its summary made when asked, and the call as a listing shows it.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..keys.calls import bind_arguments, call_digests, call_summary
from ..keys.code import Fingerprint, identity, short_name

R = TypeVar("R")

__all__ = ["EXACT", "SCALARS", "Binder", "Call", "call_of", "call_text", "fast_key", "zero_float"]

SCALARS = frozenset({int, str, bytes, bool, type(None), float})
# Types whose equal values are of the same type among themselves (1 == True == 1.0 are
# not, so bool and float are left out): arguments of these alone key as they are, as
# typed keys would, without their types. A typed key holds types, which these never
# are, so the two never meet in one dictionary.
EXACT = frozenset({int, str, bytes, type(None)})
_SCALARS_LEFT = (bytes, bool, type(None))  # compared by identity: a type may be unhashable
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
    if not kwargs:  # the common case: the types mapped and checked in C
        if EXACT.issuperset(map(type, args)):
            return args
        kinds = tuple(map(type, args))
        try:
            if not SCALARS.issuperset(kinds):
                return None
        except TypeError:  # a class whose metaclass makes it unhashable
            return None
        if float in kinds and zero_float(args):
            return None
        return args + kinds if typed else args
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


def zero_float(values: tuple[Any, ...]) -> bool:
    """Whether a float among ``values`` is a zero: -0.0 == 0.0, yet they can give
    different results, so such a call goes by content."""
    return any(type(v) is float and v == 0.0 for v in values)


def call_text(function: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``f(3, n=2)`` for a call of ``function`` (its short name): each argument's repr cut
    short, the whole at most 80 characters."""
    parts = [_short(value) for value in args]
    parts += [f"{name}={_short(value)}" for name, value in kwargs.items()]
    text = f"{function}({', '.join(parts)})"
    return text if len(text) <= 80 else text[:78] + "…)"
