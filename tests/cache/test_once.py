"""The in-process guard: one caller computes a key, the others wait and look again."""

from __future__ import annotations

import threading

from nbcache.cache.lru import LRU
from nbcache.cache.once import Inflight


def test_the_first_caller_computes_and_the_next_waits() -> None:
    """enter() gives None to the first caller and the same future to every later one;
    leave() finishes it and frees the key."""
    guard = Inflight()
    assert guard.enter("k") is None
    waiting = guard.enter("k")
    assert waiting is not None and guard.enter("k") is waiting and not waiting.done()
    assert guard.enter("other") is None  # keys are independent
    guard.leave("k")
    assert waiting.done() and guard.enter("k") is None


def test_a_waiting_thread_wakes_when_the_key_is_left() -> None:
    """A thread blocked on the future resumes once the computing caller leaves."""
    guard = Inflight()
    assert guard.enter("k") is None
    waiting = guard.enter("k")
    assert waiting is not None
    woke = threading.Event()
    thread = threading.Thread(target=lambda: (waiting.result(10), woke.set()))
    thread.start()
    assert not woke.wait(0.05)
    guard.leave("k")
    thread.join(10)
    assert woke.is_set()


def test_leaving_twice_is_harmless() -> None:
    """A second leave() of a key nobody computes does nothing (a Turn may end twice)."""
    guard = Inflight()
    guard.leave("never entered")
    assert guard.enter("k") is None
    guard.leave("k")
    guard.leave("k")
    assert guard.enter("k") is None


def test_the_lru_drops_the_least_recently_used() -> None:
    """A get counts as a use; past maxsize the oldest unused value goes."""
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert list(lru) == ["a", "c"] and lru.get("b") is None and len(lru) == 2
    assert lru.pop("a") == 1 and lru.pop("a") is None
    unlimited: LRU[int, int] = LRU(None)
    for n in range(1000):
        unlimited.put(n, n)
    assert len(unlimited) == 1000
