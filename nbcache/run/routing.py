"""Where a background cell's output goes: to its own card, never to the cell running now.

While a task's body runs on a worker thread, that thread's writes to
``sys.stdout``/``sys.stderr`` and its rich ``display()`` calls are routed to a
sink the task chose (its card and its recorded output).  Every other thread
writes where it always did.  The router is installed on the first background
cell and removed when the extension unloads.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Sink", "install", "reroute", "routed", "routed_stream", "uninstall", "unrouted"]

Sink = Callable[..., None]  # sink("stdout", text) / sink("display", data, metadata)
_local = threading.local()
_lock = threading.Lock()
_installed: dict[str, Any] = {}


def _sink() -> Sink | None:
    return getattr(_local, "sink", None)


class _Router:
    """A stream that sends a task thread's writes to its sink and others' to the real stream."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self._name = name
        self._stream = stream

    @property
    def inner(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        sink = _sink()
        if sink is None:
            return self._stream.write(text)
        sink(self._name, text)
        return len(text)

    def flush(self) -> None:
        if _sink() is None:
            self._stream.flush()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


def install(publisher: Any = None) -> None:
    """Route task threads' output from now on (idempotent)."""
    with _lock:
        if _installed:
            return
        _installed["stdout"], _installed["stderr"] = sys.stdout, sys.stderr
        sys.stdout = _Router("stdout", sys.stdout)
        sys.stderr = _Router("stderr", sys.stderr)
        original = getattr(publisher, "publish", None)
        if original is not None:
            _installed["publisher"] = publisher
            _installed["own_publish"] = vars(publisher).get("publish")

            def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
                sink = _sink()
                if sink is None:
                    return original(data, metadata, *args, **kwargs)
                sink("display", dict(data), dict(metadata or {}))
                return None

            publisher.publish = publish


def reroute() -> dict[str, TextIO]:
    """Route again where something replaced a routed stream since :func:`install` (a
    terminal prompt's ``patch_stdout``, until the prompt ends); the replacements by name.
    Whoever replaced them puts back what was there, and with it the first router."""
    with _lock:
        if not _installed:
            return {}
        replaced: dict[str, TextIO] = {}
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _Router):
                replaced[name] = stream
                setattr(sys, name, _Router(name, stream))
        return replaced


def routed_stream(name: str, stream: TextIO) -> TextIO:
    """``stream`` with task threads' writes routed in front of it (``name``: stdout or
    stderr), for whoever sets ``sys.<name>`` to ``stream`` while routing is on."""
    with _lock:
        return _Router(name, stream) if _installed else stream  # type: ignore[return-value]


def unrouted(name: str) -> TextIO:
    """The stream ``sys.<name>`` writes to for threads without a sink, past any router."""
    stream = getattr(sys, name)
    while isinstance(stream, _Router):
        stream = stream.inner
    return stream  # type: ignore[no-any-return]


def uninstall() -> None:
    """Put the real streams and publisher back (only if nobody replaced them since)."""
    with _lock:
        if not _installed:
            return
        if isinstance(sys.stdout, _Router):
            sys.stdout = _installed["stdout"]
        if isinstance(sys.stderr, _Router):
            sys.stderr = _installed["stderr"]
        publisher = _installed.get("publisher")
        if publisher is not None:
            own = _installed.get("own_publish")
            if own is None:
                vars(publisher).pop("publish", None)
            else:
                publisher.publish = own
        _installed.clear()


@contextmanager
def routed(sink: Sink) -> Iterator[None]:
    """Send this thread's output to ``sink`` inside the block."""
    previous = _sink()
    _local.sink = sink
    try:
        yield
    finally:
        _local.sink = previous
