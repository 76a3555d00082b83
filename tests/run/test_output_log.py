"""What a cell prints, recorded: linear in what it prints, bounded in what an entry keeps,
and replayed in the order it was written."""

from __future__ import annotations

import io
import sys
import tracemalloc
from typing import Any

import pytest

from nbcache.run.output import KEEP_HEAD, KEEP_TAIL, OutputLog, omitted_line


class Counted(str):
    """A piece of output that counts the characters each ``+`` it takes part in makes: the
    work of joining the pieces a cell prints."""

    made = 0

    def __add__(self, other: str) -> str:
        Counted.made += len(self) + len(other)
        return str.__add__(self, other)

    def __radd__(self, other: str) -> str:
        Counted.made += len(self) + len(other)
        return str.__add__(other, self)


def text_of(log: OutputLog) -> str:
    return "".join(e[1] for e in log.events if e[0] in ("stdout", "stderr"))


def test_recording_joins_what_a_cell_prints_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 lines of 1,000 characters: joining them costs about what they hold, not the
    square of it (each line concatenated onto all before it made 2 billion characters)."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(Counted, "made", 0)
    log = OutputLog()
    line = Counted("x" * 999 + "\n")
    with log.recording():
        for _ in range(2000):
            sys.stdout.write(line)
    assert text_of(log) == str(line) * 2000
    assert Counted.made <= 2 * 2000 * len(line)


def test_an_entry_keeps_the_head_and_the_tail_of_endless_output_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    log = OutputLog()
    lines = [f"{i:09d}" + "." * 990 + "\n" for i in range(30_000)]  # 30 MB, numbered
    tracemalloc.start()
    try:
        with log.recording():
            for i, line in enumerate(lines):
                (sys.stderr if i % 7 == 0 else sys.stdout).write(line)
            log.add("result", {"text/plain": "42"}, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # what the log holds while recording is bounded, whatever the cell printed
    assert peak < 3 * (KEEP_HEAD + 2 * KEEP_TAIL)
    events = log.events
    kinds = [e[0] for e in events]
    assert kinds.count("omitted") == 1 and kinds[-1] == "result"
    at = kinds.index("omitted")
    whole = "".join(lines)
    head = "".join(e[1] for e in events[:at])
    tail = "".join(e[1] for e in events[at + 1 :] if e[0] != "result")
    assert head == whole[:KEEP_HEAD] and tail == whole[-KEEP_TAIL:]
    assert events[at][1] == len(whole) - KEEP_HEAD - KEEP_TAIL
    # the streams stay apart on both sides of the cut, in order
    assert events[:2] == [("stderr", lines[0]), ("stdout", "".join(lines[1:7]))]


def test_a_replay_shows_where_output_was_left_out() -> None:
    out, err = io.StringIO(), io.StringIO()
    log = OutputLog([("stdout", "first\n"), ("omitted", 1234), ("stdout", "last\n")])
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        log.replay(lambda data, meta: None)
    finally:
        sys.stdout, sys.stderr = saved
    assert out.getvalue() == "first\nlast\n"
    assert err.getvalue() == omitted_line(1234)
    assert "1,234 characters" in omitted_line(1234)


class Stream(io.StringIO):
    """A kernel's stream: what was written since its last flush is one output."""

    def __init__(self, name: str, shown: list[tuple[str, str]]) -> None:
        super().__init__()
        self.name, self.shown = name, shown

    def flush(self) -> None:
        if self.getvalue():
            self.shown.append((self.name, self.getvalue()))
        self.seek(0)
        self.truncate()


def test_a_replay_interleaves_the_streams_as_they_were_written() -> None:
    """Entries of every version hold one ordered log; a replay ends each stream's output
    where the other stream's begins, as the plain run shows them."""
    shown: list[tuple[str, str]] = []
    events: list[tuple[Any, ...]] = [
        ("stdout", "out 0\n"),
        ("stderr", "err 0\n"),
        ("stdout", "out 1\n"),
        ("display", {"text/plain": "x"}, {}),
        ("stderr", "err 1\n"),
    ]
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Stream("stdout", shown), Stream("stderr", shown)
    try:
        OutputLog(events).replay(lambda data, meta: shown.append(("display", data["text/plain"])))
    finally:
        sys.stdout, sys.stderr = saved
    assert shown == [
        ("stdout", "out 0\n"),
        ("stderr", "err 0\n"),
        ("stdout", "out 1\n"),
        ("display", "x"),
        ("stderr", "err 1\n"),
    ]


def test_what_the_stream_refuses_is_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    log = OutputLog()
    with log.recording():
        with pytest.raises(TypeError):
            sys.stdout.write(b"bytes")  # type: ignore[arg-type]
        print("text")
    assert log.events == [("stdout", "text\n")]


class Publisher:
    """A display publisher as IPython's: displays, updates and clears, sent in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def publish(self, data: Any, metadata: Any = None, **shown: Any) -> None:
        self.sent.append(("publish", data, shown))

    def clear_output(self, wait: bool = False) -> None:
        self.sent.append(("clear", wait))


def test_what_a_cell_cleared_is_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a front end shows it: cleared at once, or (wait) once something more shows."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    publisher = Publisher()
    log = OutputLog()
    with log.recording(publisher):
        print("gone")
        publisher.publish({"text/plain": "gone too"})
        publisher.clear_output()
        print("kept")
    assert log.events == [("stdout", "kept\n")]
    assert publisher.sent[-1] == ("clear", False)  # still shown live
    waiting = OutputLog()
    with waiting.recording(publisher):
        print("replaced")
        publisher.clear_output(wait=True)
        print("after the wait")
        print("more")
        publisher.clear_output(wait=True)  # nothing shows after it: what was shown stays
    assert waiting.events == [("stdout", "after the wait\nmore\n")]
    assert vars(publisher) == {"sent": publisher.sent}  # its own methods again


def test_a_display_with_an_id_and_its_updates_are_recorded_and_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its own display updated: shown as updated; another cell's: its last update only,
    sent again with the id, so the front end updates that cell's display once more."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    publisher = Publisher()
    log = OutputLog()
    mine, theirs = {"display_id": "mine"}, {"display_id": "theirs"}
    with log.recording(publisher):
        publisher.publish({"text/plain": "first"}, {}, transient=mine)
        for i in range(1000):
            publisher.publish({"text/plain": f"{i}"}, {}, transient=theirs, update=True)
        publisher.publish({"text/plain": "second"}, {}, transient=mine, update=True)
        publisher.publish({"text/plain": "status"}, {"nbcache": {}}, transient={"display_id": "x"})
    assert log.events == [
        ("display", {"text/plain": "second"}, {}, {"transient": mine}),
        ("update", {"text/plain": "999"}, {}, {"transient": theirs, "update": True}),
    ]
    replayed = Publisher()
    log.replay(replayed.publish)
    assert replayed.sent == [
        ("publish", {"text/plain": "second"}, {"transient": mine}),
        ("publish", {"text/plain": "999"}, {"transient": theirs, "update": True}),
    ]
