"""What a cell shows, recorded in order while it still shows, and replayed on a hit."""

from __future__ import annotations

import io
import sys
import tokenize
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = [
    "NO_RESULT",
    "UNSTORED",
    "MemoryOnly",
    "OutputLog",
    "from_user_code",
    "hides_result",
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

    def write(self, text: str) -> int:
        if not self._log.quiet:
            self._log.add(self._name, text)
        return self._stream.write(text)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


@dataclass
class OutputLog:
    """Everything a cell showed, in order: ``("stdout", text)``, ``("display", data, meta)``."""

    events: list[tuple[Any, ...]] = field(default_factory=list)

    quiet: bool = False  # while set, text written to the streams is shown, not recorded

    def add_shown(self, kind: str, show: Callable[[], tuple[Any, ...]]) -> None:
        """Record one event that ``show`` shows and returns, without the text it writes on
        the way (a terminal's display hook prints ``Out[n]:``, a replay would print it twice)."""
        self.quiet = True
        try:
            payload = show()
        finally:
            self.quiet = False
        self.add(kind, *payload)

    def add(self, kind: str, *payload: Any) -> None:
        if kind in ("stdout", "stderr") and self.events and self.events[-1][0] == kind:
            self.events[-1] = (kind, self.events[-1][1] + payload[0])
        else:
            self.events.append((kind, *payload))

    @contextmanager
    def recording(self, publisher: Any = None) -> Iterator[OutputLog]:
        """Record stdout, stderr and ``publisher.publish`` calls while still showing them."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, "stdout", self)
        sys.stderr = _Tee(sys.stderr, "stderr", self)
        original = getattr(publisher, "publish", None) if publisher is not None else None
        own = vars(publisher).get("publish") if hasattr(publisher, "__dict__") else None
        if original is not None:
            publisher.publish = self._recording_publish(original)
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = saved
            if original is not None:
                if own is None:
                    del publisher.publish  # back to the class's method
                else:
                    publisher.publish = own

    def _recording_publish(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            if not kwargs.get("update") and not kwargs.get("transient"):
                self.add("display", dict(data), dict(metadata or {}))
            return original(data, metadata, *args, **kwargs)

        return publish

    def replay(
        self,
        publish: Callable[[dict[str, Any], dict[str, Any]], None],
        page: Callable[[Any, int], None] | None = None,
        result: Callable[[dict[str, Any], dict[str, Any]], object] | None = None,
    ) -> None:
        """Show the recorded output again, in order (pager output through ``page``, the
        cell's result where it came, through ``result``)."""
        for kind, *payload in self.events:
            if kind == "result" and result is not None:
                sys.stdout.flush()
                result(payload[0], payload[1])
                continue
            if kind == "stdout":
                sys.stdout.write(payload[0])
            elif kind == "stderr":
                sys.stderr.write(payload[0])
            elif kind == "display":
                publish(payload[0], payload[1])
            elif kind == "page" and page is not None:
                sys.stdout.flush()
                page(payload[0], payload[1])
        sys.stdout.flush()
        sys.stderr.flush()


def from_user_code(tb: Any, filename: str) -> Any:
    """The traceback from the first frame of the user's cell on (nbcache's own dropped)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename != filename:
        start = start.tb_next
    return start if start is not None else tb


def hides_result(source: str) -> bool:
    """Whether the body ends with ``;``, which hides its result as it does without us
    (IPython looks at the whole cell, whose last line is then the magic's call)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    skip = (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    last = next((t for t in reversed(tokens) if t.type not in skip), None)
    return last is not None and last.type == tokenize.OP and last.string == ";"
