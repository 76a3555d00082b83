"""``@memoize``: live results in memory in front of the shared store, never stale.

A call's key covers the function's code fingerprint (its source and the
notebook helpers and globals it uses, see :mod:`nbcache.keys.code`) and its
arguments bound to the signature, hashed by content.  The hit path re-checks
the fingerprint's dependencies on every call, so an edited helper is noticed
on the very next call, then finds the result by the call's arguments as
given (for plain scalar arguments) or by content.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import threading
import time
import types
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Generic, NamedTuple, TypeVar, overload

from typing_extensions import ParamSpec

from ..cache.core import Ask, Cache, Hit, InMemory, Start, Turn
from ..cache.default import default_cache
from ..cache.lru import HELD, LRU
from ..errors import KeyPicklingError, warn
from ..keys.calls import explain
from ..keys.code import Fingerprint, fingerprint_of, identity, short_name
from ..settings import LARGE_VALUE, memory_size
from ..tasks.executors import get_executor
from ..units import parse_duration
from .callargs import EXACT, Binder, Call, call_of, fast_key, scalar_key
from .elsewhere import Elsewhere, run_coroutine

__all__ = ["CacheInfo", "Memoized", "memoize"]

P = ParamSpec("P")
R = TypeVar("R")

_MISS: Any = object()
_POLL_START = 0.02
_POLL_MAX = 0.5


class CacheInfo(NamedTuple):
    """``functools``' ``hits, misses, maxsize, currsize``, then nbcache's own two fields:
    ``store_hits`` (hits served from the store rather than memory) and ``time_saved``
    (compute seconds not spent thanks to hits)."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    store_hits: int = 0
    time_saved: float = 0.0


class Memoized(Generic[P, R]):
    """A memoized function: call it as the original; see :func:`memoize`."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        maxsize: int | None = 128,
        store: bool = True,
        typed: bool = True,
        ignore: Iterable[str] = (),
        max_age: str | float | None = None,
        cache: Cache | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._signature = inspect.signature(fn)
        self._binder = Binder(self._signature)
        self._ignore = tuple(ignore)
        unknown = set(self._ignore) - set(self._signature.parameters)
        if unknown:
            raise ValueError(
                f"ignore names {sorted(unknown)}, which {identity(fn)} has no parameter for: "
                f"its parameters are {list(self._signature.parameters)}"
            )
        self._maxsize = maxsize
        self._persist = store
        self._typed = typed
        self._max_age = None if max_age is None else parse_duration(max_age)
        self._cache = cache
        self._identity = identity(fn)
        self._is_async = inspect.iscoroutinefunction(fn)
        self._lock = threading.RLock()
        # A function whose results are stored keeps them in memory as a cell's are: within
        # NBCACHE_MEMORY_SIZE, and a large result only while the caller holds it too (a
        # later call loads it again). One kept in memory only is kept as it is: there,
        # memory is the only place the result lives.
        self._memory: LRU[str, InMemory] = (
            LRU(maxsize, max_bytes=memory_size(), large=LARGE_VALUE) if store else LRU(maxsize)
        )
        self._slots = self._memory.slots  # read on a hit as LRU.get would, a call less
        self._ask = Ask(
            persist=store,
            max_age=self._max_age,
            name=f"the result of {self._identity}()",
            memory=self._memory,
        )
        self._fast: dict[Any, str] = {}
        self._fp: Fingerprint | None = None
        self._elsewhere = Elsewhere(self._lock)  # calls on another executor, by key
        self._hit_count = itertools.count()  # next() is atomic: the hit path takes no lock
        self._misses = self._store_hits = 0
        self._saved = 0.0
        self._warned = False
        self._previous: dict[str, Any] | None = None
        self._last: Call | None = None

    def __repr__(self) -> str:
        return f"<memoized {self._identity}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled to another process (a worker running a function that calls this one),
        it is the same function memoized in that process's memory only: the store, and
        the results kept here, stay here."""
        settings = (self._maxsize, self._typed, self._ignore, self._max_age)
        return (_memory_only, (self.__wrapped__, *settings))

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else types.MethodType(self, instance)

    @property
    def cache(self) -> Cache:
        return self._cache if self._cache is not None else default_cache()

    # -- the call ----------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._is_async:
            return self._call_async(args, kwargs)  # type: ignore[return-value]
        if kwargs:
            fast = fast_key(args, kwargs, self._typed)
        else:
            # fast_key's common case inline, a call less on every hit; a loop, since
            # frozenset.issuperset of an iterator builds a set of it first (twice the time)
            try:
                for arg in args:
                    if type(arg) not in EXACT:
                        fast = scalar_key(args, self._typed)
                        break
                else:
                    fast = args
            except TypeError:  # a class whose metaclass makes it unhashable
                fast = None
        # The hit path takes no lock: a refingerprint clears the shortcuts before it
        # publishes the new fingerprint, so a shortcut read here belongs to a valid one.
        fp = self._fp
        if fp is None or not fp.valid():
            with self._lock:
                fp = self._fingerprint()
        if fp is not None and fast is not None:
            key = self._fast.get(fast)
            if key is not None and (slot := self._slots.get(key)) is not None:
                found = slot.held
                if type(found) in HELD:  # held weakly or rebuilt: the LRU's own way
                    found = self._memory.get(key)
                else:  # what LRU.get does with the rest, inline (see LRU.slots)
                    try:
                        self._slots.move_to_end(key)
                    except KeyError:
                        pass  # another thread dropped it meanwhile; the value is still good
                if found is not None and (
                    self._max_age is None or time.time() - found[1].created <= self._max_age
                ):
                    next(self._hit_count)
                    return found[0]  # type: ignore[no-any-return]
        ck = self._key(fp, args, kwargs)
        if ck is None:
            with self._lock:
                self._misses += 1
            return self.__wrapped__(*args, **kwargs)
        return self._resolve(ck, fast, lambda: self.__wrapped__(*args, **kwargs))

    def _fingerprint(self) -> Fingerprint | None:
        """The current fingerprint; None (after one warning) when it cannot be made."""
        fp = self._fp
        if fp is not None and fp.valid():
            return fp
        self._fast.clear()  # raw-argument shortcuts point at keys of the old code
        try:
            self._fp = fingerprint_of(self.__wrapped__)
        except KeyPicklingError as exc:
            self._fp = None
            self._warn_uncached(f"its code depends on something that cannot be hashed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a fingerprint that fails is a call uncached
            self._fp = None
            self._warn_uncached(f"its code could not be fingerprinted ({_failure(exc)})")
        return self._fp

    def _from_memory(self, key: str | None) -> Any:
        if key is None:
            return _MISS
        found = self._memory.get(key)
        if found is None:
            return _MISS
        if self._max_age is not None and time.time() - found[1].created > self._max_age:
            return _MISS
        next(self._hit_count)
        return found[0]

    def _key(self, fp: Fingerprint | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if fp is None:
            return None
        try:
            arguments = self._binder.arguments(args, kwargs)
        except TypeError:
            return None  # arguments that do not fit: the call itself says so, as without us
        try:
            return call_of(
                self.__wrapped__, fp, arguments, (args, kwargs), self._typed, self._ignore
            )
        except KeyPicklingError as exc:
            self._warn_uncached(str(exc))
        except Exception as exc:  # noqa: BLE001 - a key that cannot be built: run uncached
            self._warn_uncached(f"its arguments could not be hashed ({_failure(exc)})")
        return None

    def _warn_uncached(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            warn(f"nbcache: {self._identity}() runs uncached: {reason}", stacklevel=4)

    def _resolve(self, ck: Call, fast: Any, compute: Callable[[], R]) -> R:
        """Memory, then the store, then compute: once per key among threads and processes."""
        meta = lambda value: self._meta(ck)  # noqa: E731 - made only when a miss stores
        outcome = self.cache.get_or_compute(ck.key, ck.settled(compute), meta, ask=self._ask)
        self._record(ck, fast, outcome.hit)
        return outcome.value

    def _meta(self, ck: Call) -> dict[str, Any]:
        return {
            "label": f"{short_name(self._identity)}()",
            "identity": self._identity,
            "summary": ck.summary,
            "first_line": str(ck.summary.get("call", "")),
        }

    def _record(self, ck: Call, fast: Any, hit: Hit[Any] | None) -> None:
        with self._lock:
            self._remember_fast(fast, ck.key)
            if hit is None:
                self._misses += 1
                self._note_miss(ck)
            elif hit.source == "memory":
                next(self._hit_count)
            else:
                next(self._hit_count)
                self._store_hits += 1
                self._saved += hit.info.compute_seconds

    def _remember_fast(self, fast: Any, key: str) -> None:
        if fast is not None and (self._maxsize is None or len(self._fast) < 4 * self._maxsize):
            self._fast[fast] = key

    def _note_miss(self, ck: Call) -> None:
        if self._previous is None and self._last is None:
            self._previous = self.cache.latest(self._identity)
        elif self._last is not None:
            self._previous = self._last.summary
        self._last = ck
        self.cache.note_latest(self._identity, ck.summary)

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            fp = self._fingerprint()
        ck = self._key(fp, args, kwargs)
        if ck is None:
            with self._lock:
                self._misses += 1
            return await self.__wrapped__(*args, **kwargs)  # type: ignore[misc]
        delay = _POLL_START
        while True:
            turn = self.cache.try_begin(ck.key, self._ask)
            if turn is not None:
                break
            # Another coroutine, thread or process computes this call: poll for its entry
            # without blocking the event loop.
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)
        if isinstance(turn, Hit):
            self._record(ck, None, turn)
            return turn.value
        try:
            ck.settle()
            start = time.perf_counter()
            value = await self.__wrapped__(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            turn.abandon()
            raise
        turn.finish(value, time.perf_counter() - start, self._meta(ck))
        self._record(ck, None, None)
        return value

    # -- functools-compatible housekeeping ----------------------------------------

    def cache_info(self) -> CacheInfo:
        """Hits, misses, maxsize and current size, plus store hits and time saved."""
        with self._lock:
            return CacheInfo(
                int(repr(self._hit_count)[len("count(") : -1]),  # read without advancing it
                self._misses,
                self._maxsize,
                len(self._memory),
                self._store_hits,
                self._saved,
            )

    def cache_clear(self, store: bool = False) -> None:
        """Empty the memory layer and reset the counters; ``store=True`` also removes
        this function's stored entries."""
        with self._lock:
            self._memory.clear()
            self._fast.clear()
            self._hit_count = itertools.count()
            self._misses = self._store_hits = 0
            self._saved = 0.0
        if store:
            cache = self.cache
            for record in cache.ledger.records():
                if record.identity == self._identity:
                    cache.remove(record.key)

    def cache_parameters(self) -> dict[str, Any]:
        """The settings, as ``functools.lru_cache``'s ``cache_parameters()`` gives them."""
        return {
            "maxsize": self._maxsize,
            "typed": self._typed,
            "store": self._persist,
            "ignore": self._ignore,
            "max_age": self._max_age,
        }

    def why(self) -> list[str]:
        """Why the last call that computed was a miss, compared with the entry before it."""
        if self._last is None:
            return [f"{short_name(self._identity)}() has not computed anything yet"]
        return explain(self._previous, self._last.summary)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Start the call in the background: a ``concurrent.futures.Future`` of its result.

        A hit (in memory or the store) gives a future that is already done. A
        miss runs on the executor chosen with :func:`nbcache.configure`: on the
        thread pool (the default) the whole memoized call runs there, as a call
        would. On any other executor (``"process"``, ``"dask"``, a
        ``distributed.Client``, an ``Executor``) only the function runs there,
        its arguments pickled to the worker; its result comes back and is kept
        here, in memory and the store, before the future finishes. A call that
        another process computes (it holds the key's lease) is not sent: the
        future ends with that process's entry. Submitting a
        call that is already on its way gives the same future; cancelling the
        future stops the call if it has not started (on dask, also at the
        function's next ``nbcache.progress`` step).

        Raises:
            ExecutorError: the configured executor cannot run work (dask not
                installed or not configured, its scheduler unreachable).
        """
        fast = fast_key(args, kwargs, self._typed)
        with self._lock:
            fp = self._fingerprint()
            found = self._from_memory(self._fast.get(fast)) if fast is not None else _MISS
        ck = None
        if found is _MISS and fp is not None:
            ck = self._key(fp, args, kwargs)
            hit = None if ck is None else self.cache.lookup(ck.key, ask=self._ask)
            if ck is not None and hit is not None:
                self._record(ck, fast, hit)
                found = hit.value
        if found is not _MISS:
            done: Future[R] = Future()
            done.set_result(found)
            return done
        executor = get_executor()
        if isinstance(executor, ThreadPoolExecutor):
            if self._is_async:
                return executor.submit(asyncio.run, self(*args, **kwargs))  # type: ignore[arg-type]
            return executor.submit(self, *args, **kwargs)
        return self._submit_elsewhere(executor, ck, fast, args, kwargs)

    def _submit_elsewhere(
        self,
        executor: Executor,
        ck: Call | None,
        fast: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Future[R]:
        """Run the function alone on ``executor``; keep its result here when it comes back."""
        call: Callable[..., Any] = (
            functools.partial(run_coroutine, self.__wrapped__)
            if self._is_async
            else self.__wrapped__
        )
        if ck is None:  # no key (a warning said why): it runs uncached
            with self._lock:
                self._misses += 1
            return executor.submit(call, *args, **kwargs)

        ck.settle()

        def keep(turn: Turn, value: Any, seconds: float) -> None:
            turn.finish(value, seconds, self._meta(ck))
            self._record(ck, fast, None)

        return self._elsewhere.submit(
            executor,
            call,
            args,
            kwargs,
            ck.key,
            begin=lambda: self.cache.try_begin(ck.key, self._ask, Start.MISSED),
            found=lambda hit: self._record(ck, fast, hit),
            # Another caller computes this call: wait for its entry here, as a call would
            # (and compute here if that process dies).
            wait=lambda: get_executor("thread").submit(self, *args, **kwargs),
            keep=keep,
        )


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _memory_only(
    fn: Callable[..., Any],
    maxsize: int | None,
    typed: bool,
    ignore: tuple[str, ...],
    max_age: float | None,
) -> Memoized[Any, Any]:
    return Memoized(fn, maxsize=maxsize, store=False, typed=typed, ignore=ignore, max_age=max_age)


@overload
def memoize(fn: Callable[P, R], /) -> Memoized[P, R]: ...
@overload
def memoize(
    *,
    maxsize: int | None = ...,
    store: bool = ...,
    typed: bool = ...,
    ignore: Iterable[str] = ...,
    max_age: str | float | None = ...,
    cache: Cache | None = ...,
) -> Callable[[Callable[P, R]], Memoized[P, R]]: ...


def memoize(
    fn: Callable[P, R] | None = None,
    /,
    *,
    maxsize: int | None = 128,
    store: bool = True,
    typed: bool = True,
    ignore: Iterable[str] = (),
    max_age: str | float | None = None,
    cache: Cache | None = None,
) -> Memoized[P, R] | Callable[[Callable[P, R]], Memoized[P, R]]:
    """Memoize a function in memory and in the shared store, keyed by code and content.

    Use as ``@memoize`` or ``@memoize(...)``.

    Args:
        maxsize: live results kept in memory (None: no limit; 0: none).
        store: False keeps results in memory only.
        typed: ``f(1)``, ``f(1.0)`` and ``f(True)`` are separate entries (the
            default, since they can give different results).
        ignore: parameter names left out of the key (``verbose``, ``n_jobs``).
        max_age: older entries count as a miss (``"7d"``, seconds).
        cache: the cache to use; by default the process-wide one.

    Raises:
        ValueError: ``ignore`` names a parameter the function does not have,
            or ``max_age`` is not a duration.
    """

    def decorate(function: Callable[P, R]) -> Memoized[P, R]:
        return Memoized(
            function,
            maxsize=maxsize,
            store=store,
            typed=typed,
            ignore=ignore,
            max_age=max_age,
            cache=cache,
        )

    return decorate if fn is None else decorate(fn)
