"""Futures: any future, or a plain value, as a ``concurrent.futures.Future``.

:func:`as_future` turns a ``concurrent.futures`` future, an asyncio future, a
dask future or a plain value into a ``concurrent.futures.Future`` with the
same outcome; :func:`wrap_future` does the same but drops the value.
Nothing here imports dask: its classes are recognised by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any

__all__ = ["as_future", "is_dask_client", "settle", "settle_with", "wrap_future"]


# -- bridging futures ------------------------------------------------------------------


def _cancel(target: Future[Any]) -> None:
    """Cancel ``target``; one already running ends with CancelledError instead."""
    if target.cancel():
        target.set_running_or_notify_cancel()  # wakes wait() and as_completed()
    elif not target.done():
        target.set_exception(CancelledError())


def settle_with(target: Future[Any], source: Any, value: Callable[[Any], Any]) -> None:
    """Give ``target`` the outcome of the finished ``source``."""
    if target.done():
        return
    try:
        if source.cancelled():
            _cancel(target)
            return
        target.set_result(value(source.result()))
    except (CancelledError, asyncio.CancelledError):
        _cancel(target)
    except BaseException as exc:  # noqa: BLE001 - the source's own failure, carried over
        target.set_exception(exc)


def settle(target: Future[Any], source: Any) -> None:
    """Give ``target`` the outcome of the finished future ``source``: its value, its
    exception or its cancellation (nothing if ``target`` is already done)."""
    settle_with(target, source, lambda result: result)


def _from_distributed(x: Any, name: str) -> bool:
    """Whether ``x`` is an instance of distributed's class ``name`` (without importing it)."""
    return any(
        (cls.__module__ or "").startswith("distributed") and cls.__name__ == name
        for cls in type(x).__mro__
    )


def _is_dask_future(x: Any) -> bool:
    return _from_distributed(x, "Future") and hasattr(x, "add_done_callback")


def is_dask_client(x: Any) -> bool:
    """Whether ``x`` is a ``distributed.Client`` (never imports distributed)."""
    return _from_distributed(x, "Client")


def _bridge(source: Any, value: Callable[[Any], Any]) -> Future[Any]:
    target: Future[Any] = Future()
    target.source = source  # type: ignore[attr-defined]  # a dask future dropped is never run
    if isinstance(source, asyncio.Future):
        loop = source.get_loop()
        source.add_done_callback(lambda done: settle_with(target, done, value))
        target.add_done_callback(
            lambda done: done.cancelled() and loop.call_soon_threadsafe(source.cancel)
        )
    else:
        source.add_done_callback(lambda done: settle_with(target, done, value))
        target.add_done_callback(lambda done: done.cancelled() and source.cancel())
    return target


def as_future(x: Any) -> Future[Any]:
    """A ``concurrent.futures.Future`` with ``x``'s outcome, already done when ``x`` is
    not a future; cancelling it cancels ``x``."""
    if isinstance(x, Future):
        return x
    if isinstance(x, asyncio.Future) or _is_dask_future(x):
        return _bridge(x, lambda result: result)
    done: Future[Any] = Future()
    done.set_result(x)
    return done


def wrap_future(x: Any) -> Future[None]:
    """A future that finishes when ``x`` does and carries its exception, not its value."""
    if not (isinstance(x, (Future, asyncio.Future)) or _is_dask_future(x)):
        done: Future[None] = Future()
        done.set_result(None)
        return done
    return _bridge(x, lambda result: None)
