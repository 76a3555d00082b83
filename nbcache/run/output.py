"""What a cell shows, recorded in order while it still shows, and replayed on a hit."""

from __future__ import annotations

import io
import os
import sys
import tokenize
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = [
    "KEEP_HEAD",
    "KEEP_TAIL",
    "NO_RESULT",
    "UNSTORED",
    "MemoryOnly",
    "OutputLog",
    "from_user_code",
    "hides_result",
    "omitted_line",
    "output_widget_capturing",
    "shows_result",
    "unstored",
]


class _NoResult:
    """The one value of a cell without a last expression (its own type, so an entry that
    stored it gives back this same object, never a look-alike that IPython shows)."""

    _made: _NoResult | None = None

    def __new__(cls) -> _NoResult:
        if cls._made is None:
            cls._made = super().__new__(cls)
        return cls._made

    def __repr__(self) -> str:
        return "<no result>"

    def __reduce__(self) -> str:
        return "NO_RESULT"  # pickled by reference to this module's global


NO_RESULT: Any = _NoResult()
"""What running a cell returns when it does not end with an expression."""


class _Unstored(_NoResult):
    """A result that could not be pickled, as a stored entry has it: its output stays."""

    _made: _NoResult | None = None

    def __repr__(self) -> str:
        return "<result not stored>"

    def __reduce__(self) -> str:
        return "UNSTORED"


UNSTORED: Any = _Unstored()
"""A stored cell's result that would not pickle; the entry keeps how it was shown."""


def shows_result(result: Any) -> bool:
    """Whether IPython would show ``result`` as the cell's ``Out``: not ``None`` either."""
    return result is not NO_RESULT and result is not None and result is not UNSTORED


class MemoryOnly:
    """A cell's result kept live in memory and stored as :data:`UNSTORED`, so a result
    that will not pickle does not keep the cell's variables out of the store."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (unstored, ())


def unstored() -> Any:
    """What a :class:`MemoryOnly` result loads as: :data:`UNSTORED`."""
    return UNSTORED


class _Tee:
    """A text stream that writes through to the real one and records what went by."""

    def __init__(self, stream: TextIO, name: str, log: OutputLog) -> None:
        self._stream = stream
        self._name = name
        self._log = log

    @property
    def wrapped(self) -> TextIO:
        """The stream written through to (what a logging handler made in the cell meant)."""
        return self._stream

    def write(self, text: str) -> int:
        written = self._stream.write(text)  # what the stream refuses is not recorded
        log = self._log
        if log.quiet:
            return written
        if log._kind == self._name and not log._dirty and isinstance(text, str):
            # the common case, once or twice per print: one more piece of the stream
            # written last (inline: a call more per write is a tenth of printing's time)
            log._pieces.append(text)
            log._size += len(text)
            if log._size > _TRIM_AT:
                log._settle()
                log._trim()
            return written
        log.add(self._name, text)
        return written

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


def _point_handlers(moves: dict[int, Any]) -> None:
    """Point the logging stream handlers writing to a stream in ``moves`` at its new
    stream. Only loggers that exist are looked at (nothing imports logging)."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    for logger in [logging.root, *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", ())):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and id(stream) in moves:
                handler.stream = moves[id(stream)]


# Characters of a cell's output an entry keeps from its start and from its end; what
# the cell showed between them is left out, and an ``("omitted", characters)`` event
# stands where it was (a restore says so there). Storing and restoring more costs a
# cell that prints without end more than its printing (a 20 MB cell: 0.3 s more
# with 4 million each, where printing it in a kernel takes 0.7 s).
KEEP_HEAD = 1_000_000
KEEP_TAIL = 1_000_000
_TRIM_AT = KEEP_HEAD + 2 * KEEP_TAIL  # while recording: trimmed once per KEEP_TAIL

_STREAMS = ("stdout", "stderr")


class OutputLog:
    """Everything a cell showed, in order: ``("stdout", text)``, ``("display", data, meta)``
    (``("display", data, meta, {"transient": ...})`` for one with a display id, which a
    later cell may update), ``("update", data, meta, {"transient": ..., "update": True})``
    for the update of a display another cell showed. What ``clear_output`` cleared is
    left out, as a front end leaves it out.

    Recording is linear in what the cell prints: a run of writes to one stream is kept as
    a list of pieces, joined once when the log is read. The log keeps at most
    :data:`KEEP_HEAD` characters from the start and :data:`KEEP_TAIL` from the end (twice
    that while recording, so trimming is paid once per ``KEEP_TAIL`` characters).
    """

    def __init__(self, events: list[tuple[Any, ...]] | None = None) -> None:
        self._events: list[tuple[Any, ...]] = list(events) if events is not None else []
        self.quiet = False  # while set, text written to the streams is shown, not recorded
        self._kind: str | None = None  # the stream the pieces below were written to
        self._pieces: list[str] = []
        self._size = 0  # characters logged and kept, pieces included
        self._dirty = True  # the events list may have been changed from outside: recount
        self._clearing = False  # clear_output(wait=True): what was shown goes at the next
        self.captured = False  # something recorded was shown inside a widget's Output

    @property
    def events(self) -> list[tuple[Any, ...]]:
        """The log as a list of events, each run of stream writes joined into one (a
        caller may change it in place: the log counts again before its next write)."""
        self._settle()
        if self._size > KEEP_HEAD + KEEP_TAIL:
            self._trim()
        self._dirty = True
        return self._events

    def add_shown(self, kind: str, show: Callable[[], tuple[Any, ...]]) -> None:
        """Record one event that ``show`` shows and returns, without the text it writes on
        the way (a terminal's display hook prints ``Out[n]:``, a replay would print it twice)."""
        self.quiet = True
        try:
            payload = show()
        finally:
            self.quiet = False
        self.add(kind, *payload)

    def clear(self, wait: bool = False) -> None:
        """``clear_output``: what the cell showed so far is not shown; with ``wait``, once
        it shows something more (never, if it shows nothing more), as a front end clears.
        Inside a widget's Output it clears that widget, not the cell."""
        if output_widget_capturing():
            self.captured = True
            return
        self._dirty = True  # the next write goes through add, which clears first
        if wait:
            self._clearing = True
            return
        self._events, self._kind, self._pieces, self._clearing = [], None, [], False

    def shown(self, data: dict[str, Any], meta: dict[str, Any], shown: dict[str, Any]) -> None:
        """A display with an id (``shown["transient"]``), or its update (``shown["update"]``):
        an update of a display this cell showed changes it here, as the front end does;
        of another cell's display, only its last update is kept."""
        if not shown.get("update"):
            self.add("display", data, meta, shown)
            return
        self._settle()
        target = shown.get("transient", {}).get("display_id")
        for i, event in enumerate(self._events):
            if event[0] in ("display", "update") and len(event) > 3:
                if event[3].get("transient", {}).get("display_id") != target:
                    continue
                if event[0] == "display":
                    self._events[i] = (event[0], data, meta, event[3])
                    self._dirty = True
                    return
                del self._events[i]
                self._dirty = True
                break
        self.add("update", data, meta, shown)

    def add(self, kind: str, *payload: Any) -> None:
        # checked as each event begins (a run of writes to one stream is one event), not
        # on every write: the widget's Output captures a whole block of the cell
        self.captured = self.captured or output_widget_capturing()
        if self._clearing:
            self.clear()
        if self._dirty:
            self._recount()
        if kind in _STREAMS:
            text = str(payload[0])
            if kind != self._kind:
                self._settle()
                self._kind = kind
            self._pieces.append(text)
            self._size += len(text)
        else:
            self._settle()
            self._events.append((kind, *payload))
            self._size += _size_of(self._events[-1])
        if self._size > _TRIM_AT:
            self._settle()
            self._trim()

    def _settle(self) -> None:
        """Join the pieces written to one stream since the last event into one event."""
        if self._kind is None:
            return
        text = "".join(self._pieces)
        last = self._events[-1] if self._events else None
        if last is not None and last[0] == self._kind:
            self._events[-1] = (self._kind, last[1] + text)
        else:
            self._events.append((self._kind, text))
        self._kind, self._pieces = None, []

    def _recount(self) -> None:
        self._settle()
        self._size = sum(_size_of(e) for e in self._events)
        self._dirty = False

    def _trim(self) -> None:
        """Leave out all but the first KEEP_HEAD and the last KEEP_TAIL characters, where
        an ``("omitted", characters)`` event then stands (the pieces are settled)."""
        events = self._events
        at = next((i for i, e in enumerate(events) if e[0] == "omitted"), None)
        if at is None:
            head, tail = _first(events, KEEP_HEAD)
            omitted = 0
        else:
            head, tail, omitted = events[:at], events[at + 1 :], int(events[at][1])
        kept, dropped = _last(tail, KEEP_TAIL)
        self._events = [*head, ("omitted", omitted + dropped), *kept]
        self._size = sum(_size_of(e) for e in head) + sum(_size_of(e) for e in kept)

    @contextmanager
    def recording(self, publisher: Any = None) -> Iterator[OutputLog]:
        """Record stdout, stderr and ``publisher.publish`` calls while still showing them."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, "stdout", self)
        sys.stderr = _Tee(sys.stderr, "stderr", self)
        # logging handlers on the real streams log into the cell, as they show there
        _point_handlers({id(saved[0]): sys.stdout, id(saved[1]): sys.stderr})
        patched = _patch(publisher, "publish", self._recording_publish)
        patched += _patch(publisher, "clear_output", self._recording_clear)
        try:
            yield self
        finally:
            tees = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = saved
            # back on the real streams, and those the cell made on a tee too: a plain
            # run's handler writes to the stream, not to this cell's record of it
            _point_handlers({id(t): saved[i] for i, t in enumerate(tees)})
            for name, own in patched:
                if own is None:
                    delattr(publisher, name)  # back to the class's method
                else:
                    setattr(publisher, name, own)

    def _recording_publish(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            meta, transient = dict(metadata or {}), kwargs.get("transient")
            if not kwargs.get("update") and not transient:
                self.add("display", dict(data), meta)
            elif transient and "nbcache" not in meta:  # nbcache's own lines are not the cell's
                update = {"update": True} if kwargs.get("update") else {}
                self.shown(dict(data), meta, {"transient": dict(transient), **update})
            return original(data, metadata, *args, **kwargs)

        return publish

    def _recording_clear(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def clear_output(wait: bool = False) -> Any:
            done = original(wait)  # a kernel sends the streams written before it first
            self.clear(bool(wait))
            return done

        return clear_output

    def replay(
        self,
        publish: Callable[..., None],
        page: Callable[[Any, int], None] | None = None,
        result: Callable[[dict[str, Any], dict[str, Any]], object] | None = None,
    ) -> None:
        """Show the recorded output again, in order (pager output through ``page``, the
        cell's result where it came, through ``result``)."""
        last = None
        for kind, *payload in self.events:
            if last in _STREAMS and kind != last:
                # the plain run's streams interleave as written: a write to one stream
                # after the other is its own output, not joined to the earlier text
                getattr(sys, last).flush()
            last = kind
            if kind == "result" and result is not None:
                sys.stdout.flush()
                result(payload[0], payload[1])
                continue
            if kind == "stdout":
                sys.stdout.write(payload[0])
            elif kind == "stderr":
                sys.stderr.write(payload[0])
            elif kind == "omitted":
                sys.stdout.flush()
                sys.stderr.write(omitted_line(int(payload[0])))
                last = "stderr"
            elif kind in ("display", "update"):
                publish(payload[0], payload[1], **(payload[2] if len(payload) > 2 else {}))
            elif kind == "page" and page is not None:
                sys.stdout.flush()
                page(payload[0], payload[1])
        sys.stdout.flush()
        sys.stderr.flush()


def output_widget_capturing() -> bool:
    """Whether an ipywidgets ``Output`` captures what is shown now (inside its ``with``
    block, as ``interact`` shows a function's output): a front end shows it in that
    widget rather than in the cell."""
    widgets = sys.modules.get("ipywidgets.widgets.widget")
    output = sys.modules.get("ipywidgets.widgets.widget_output")
    live = getattr(widgets, "_instances", None)  # every widget the kernel holds, by model id
    if output is None or not isinstance(live, dict):
        return False
    return any(isinstance(w, output.Output) and w.msg_id for w in list(live.values()))


def _patch(
    publisher: Any, name: str, recording: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> list[tuple[str, Any]]:
    """Put ``recording(publisher.name)`` in place of ``publisher.name``; ``[(name, the
    instance's own attribute or None)]`` to put back, ``[]`` when it has none."""
    original = getattr(publisher, name, None) if publisher is not None else None
    if original is None:
        return []
    own = vars(publisher).get(name) if hasattr(publisher, "__dict__") else None
    setattr(publisher, name, recording(original))
    return [(name, own)]


def _size_of(event: tuple[Any, ...]) -> int:
    """What an event counts against the bound: a stream's characters, a display's text
    and data; the result and paged text count nothing (they are always kept)."""
    if event[0] in _STREAMS:
        return len(event[1])
    if event[0] in ("display", "update") and isinstance(event[1], dict):
        return sum(len(v) for v in event[1].values() if isinstance(v, (str, bytes)))
    return 0


def _first(
    events: list[tuple[Any, ...]], limit: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The events within the first ``limit`` characters, and the rest (a stream event the
    line passes through is cut in two)."""
    for i, event in enumerate(events):
        size = _size_of(event)
        if size <= limit:
            limit -= size
            continue
        if event[0] in _STREAMS and limit:
            cut = (event[0], event[1][:limit]), (event[0], event[1][limit:])
            return [*events[:i], cut[0]], [cut[1], *events[i + 1 :]]
        return events[:i], events[i:]
    return list(events), []


def _last(events: list[tuple[Any, ...]], limit: int) -> tuple[list[tuple[Any, ...]], int]:
    """The events within the last ``limit`` characters (a stream event cut, a display left
    out whole; the result and paged text always kept), and the characters left out."""
    over = sum(_size_of(e) for e in events) - limit
    kept: list[tuple[Any, ...]] = []
    dropped = 0
    for event in events:
        size = _size_of(event)
        if over <= 0 or size == 0:
            kept.append(event)
        elif event[0] in _STREAMS and size > over:
            kept.append((event[0], event[1][over:]))
            dropped, over = dropped + over, 0
        else:
            dropped, over = dropped + size, over - size
    return kept, dropped


def omitted_line(characters: int) -> str:
    """What a restore shows where an entry left a cell's output out."""
    return (
        f"nbcache: {characters:,} characters of this cell's output are not shown: its "
        f"stored entry keeps the first {KEEP_HEAD:,} and the last {KEEP_TAIL:,}\n"
    )


def from_user_code(tb: Any, filename: str) -> Any:
    """The traceback from the first frame of the user's cell on (nbcache's own dropped)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename != filename:
        start = start.tb_next
    start = start if start is not None else tb
    entry = start
    while entry is not None:  # IPython never hides the last frame: a failed import's is ours
        following = entry.tb_next
        while following is not None and _hidden_of_ours(following):
            following = following.tb_next
        entry.tb_next = following
        entry = following
    return start


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _hidden_of_ours(entry: Any) -> bool:
    """A frame of nbcache's that asks to be hidden (the import hook around a cell's imports)."""
    frame = entry.tb_frame
    return bool(
        frame.f_code.co_filename.startswith(_PACKAGE) and frame.f_locals.get("__tracebackhide__")
    )


def hides_result(source: str) -> bool:
    """Whether the body ends with ``;``, which hides its result as it does without us
    (IPython looks at the whole cell, whose last line is then the magic's call)."""
    if ";" not in source:
        return False  # no token can be one: the tokenizer's pass is a restored cell's cost
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    skip = (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    last = next((t for t in reversed(tokens) if t.type not in skip), None)
    return last is not None and last.type == tokenize.OP and last.string == ";"
