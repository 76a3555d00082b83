"""The hashing rule for live handles: figures, widgets, open files, locks, generators.

Their state lives outside the value (a canvas, a file position, a thread),
so there is no content to key on, and walking them costs minutes (a
matplotlib Figure is a web of shared artists).  They are refused at once
with :class:`~nbcache.keys.hashing.LiveHandleError`; the cell runs uncached,
so a cell that draws on an existing ``ax`` gives the same picture every time.
"""

from __future__ import annotations

import io
import socket
import threading
import types
from typing import Any

from ..classes import Matcher, loaded_class
from ..hashing import LiveHandleError
from ..node import Node, Rule

__all__ = ["RULES", "is_drawing", "is_live_handle"]


_LIVE_STATIC: tuple[type, ...] = (
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.FrameType,
    types.TracebackType,
    io.IOBase,
    socket.socket,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Event,
    threading.Semaphore,
    threading.Thread,
    threading.Barrier,
)
_LIVE_OPTIONAL = (
    ("matplotlib.artist", "Artist"),  # Figure, Axes, lines, texts
    ("matplotlib.backend_bases", "FigureCanvasBase"),
    ("ipywidgets", "Widget"),
    ("sqlite3", "Connection"),
    ("sqlite3", "Cursor"),
    ("subprocess", "Popen"),
    ("asyncio", "AbstractEventLoop"),
    ("asyncio", "Future"),
    ("concurrent.futures", "Future"),
    ("multiprocessing.connection", "Connection"),
    ("mmap", "mmap"),
)


def is_live_handle(cls: type) -> bool:
    """True for handles whose state lives outside the value: nothing to key them on."""
    if issubclass(cls, (io.BytesIO, io.StringIO)):
        return False  # in-memory buffers: their content is the value, and it pickles
    if issubclass(cls, _LIVE_STATIC):
        return True
    return any(
        (base := loaded_class(module, name)) is not None and issubclass(cls, base)
        for module, name in _LIVE_OPTIONAL
    )


_DRAWING = (
    ("matplotlib.artist", "Artist"),
    ("matplotlib.backend_bases", "FigureCanvasBase"),
    ("ipywidgets", "Widget"),
)


def is_drawing(cls: type) -> bool:
    """Figures, axes and widgets: what a cell draws on, rather than data it reads."""
    return any(
        (base := loaded_class(module, name)) is not None and issubclass(cls, base)
        for module, name in _DRAWING
    )


def _live_rule(n: Node, value: Any) -> None:
    error = LiveHandleError(
        "it is a live handle (a figure, widget, open file, connection, lock or generator), "
        "whose state lives outside the value, so nbcache does not guess a key for it"
    )
    error.drawing = is_drawing(type(value))
    raise error


RULES: tuple[tuple[Matcher, Rule], ...] = ((is_live_handle, _live_rule),)
