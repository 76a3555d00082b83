"""``nbcache.lru_cache``: ``functools.lru_cache`` that calls through on unhashable arguments."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from typing_extensions import ParamSpec

__all__ = ["LRUWrapper", "lru_cache"]

P = ParamSpec("P")
R = TypeVar("R")


def _hashable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        hash(args)
        hash(tuple(kwargs.values()))
    except TypeError:
        return False
    return True


class LRUWrapper(Generic[P, R]):
    """A function memoized in memory; unhashable arguments skip the cache, never fail."""

    def __init__(self, fn: Callable[P, R], maxsize: int | None, typed: bool) -> None:
        self.__wrapped__ = fn
        self._cached: Any = functools.lru_cache(maxsize=maxsize, typed=typed)(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return self._cached(*args, **kwargs)  # type: ignore[no-any-return]
        except TypeError:
            # lru_cache raises before calling fn when an argument is unhashable; a
            # TypeError from fn itself, with hashable arguments, is the user's own.
            if _hashable(args, kwargs):
                raise
            return self.__wrapped__(*args, **kwargs)

    def cache_info(self) -> Any:
        return self._cached.cache_info()

    def cache_clear(self) -> None:
        self._cached.cache_clear()

    def cache_parameters(self) -> dict[str, Any]:
        return dict(self._cached.cache_parameters())

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self, instance)


def lru_cache(
    maxsize: int | None = 64, typed: bool = True
) -> Callable[[Callable[P, R]], LRUWrapper[P, R]]:
    """Memoize in memory like ``functools.lru_cache``; unhashable arguments call through.

    Args:
        maxsize: how many results to keep (None: no limit).
        typed: ``f(1)`` and ``f(1.0)`` are separate entries (the default here,
            unlike functools, because they can give different results).
    """

    def decorate(fn: Callable[P, R]) -> LRUWrapper[P, R]:
        return LRUWrapper(fn, maxsize, typed)

    return decorate
