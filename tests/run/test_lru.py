"""nbcache.lru_cache: functools underneath, unhashable arguments call through."""

from __future__ import annotations

import pytest

from nbcache import lru_cache


def test_hashable_arguments_are_cached() -> None:
    """Repeated hashable calls hit, as with functools.lru_cache."""
    calls: list[int] = []

    @lru_cache(maxsize=2)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert [f(1), f(1), f(2)] == [2, 2, 4]
    assert calls == [1, 2]
    assert f.cache_info() == (1, 2, 2, 2)
    assert f.cache_parameters() == {"maxsize": 2, "typed": True}
    f.cache_clear()
    assert f.cache_info() == (0, 0, 2, 0)


def test_typed_by_default() -> None:
    """1 and 1.0 are separate entries by default."""

    @lru_cache()
    def kind(x: float) -> str:
        return type(x).__name__

    assert (kind(1), kind(1.0)) == ("int", "float")


def test_unhashable_arguments_call_through() -> None:
    """A list argument runs the function instead of raising TypeError."""
    calls: list[object] = []

    @lru_cache()
    def total(xs: list[int]) -> int:
        calls.append(xs)
        return sum(xs)

    assert total([1, 2]) == 3
    assert total([1, 2]) == 3
    assert len(calls) == 2


def test_users_type_error_is_not_retried() -> None:
    """A TypeError raised by the function itself propagates once, never re-run."""
    calls: list[int] = []

    @lru_cache()
    def bad(x: int) -> int:
        calls.append(x)
        raise TypeError("user bug")

    with pytest.raises(TypeError, match="user bug"):
        bad(1)
    assert calls == [1]


def test_methods_and_wrapped() -> None:
    """It works on methods and exposes __wrapped__ and the original name."""

    class Thing:
        def __init__(self, k: int) -> None:
            self.k = k

        @lru_cache()
        def plus(self, x: int) -> int:
            return self.k + x

    assert Thing(1).plus(2) == 3
    assert Thing.plus.__name__ == "plus"
    assert Thing.plus.__wrapped__(Thing(5), 1) == 6
