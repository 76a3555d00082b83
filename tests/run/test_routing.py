"""``run/routing.py``: a task thread's output goes to its sink, every other thread's
where it always went, and uninstalling puts the streams and publisher back."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nbcache.run import routing


class Publisher:
    def __init__(self) -> None:
        self.shown: list[tuple[Any, Any]] = []

    def publish(self, data: Any, metadata: Any = None) -> None:
        self.shown.append((data, metadata))


@contextmanager
def plain_streams() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Plain streams as sys.stdout/sys.stderr inside the block (set in the test's body:
    pytest's capture sets its own again between a fixture and the test), no router
    before or after."""
    routing.uninstall()
    saved = sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        routing.uninstall()
        sys.stdout, sys.stderr = saved


def _texts(pieces: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The pieces that carry text (print's ``end=""`` writes an empty string too)."""
    return [piece for piece in pieces if piece[-1] != ""]


def _in_thread(work: Any) -> None:
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


def test_a_routed_thread_writes_to_its_sink_and_others_to_the_stream() -> None:
    got: list[tuple[Any, ...]] = []

    def task() -> None:
        with routing.routed(lambda *piece: got.append(piece)):
            print("from the task")
            print("oops", file=sys.stderr)
            sys.stdout.flush()

    with plain_streams() as (out, err):
        routing.install()
        _in_thread(task)
        print("from the cell")
    assert _texts(got) == [
        ("stdout", "from the task"),
        ("stdout", "\n"),
        ("stderr", "oops"),
        ("stderr", "\n"),
    ]
    assert out.getvalue() == "from the cell\n" and err.getvalue() == ""


def test_displays_of_a_routed_thread_go_to_its_sink() -> None:
    publisher = Publisher()
    got: list[tuple[Any, ...]] = []

    def task() -> None:
        with routing.routed(lambda *piece: got.append(piece)):
            publisher.publish({"text/plain": "chart"})

    with plain_streams():
        routing.install(publisher)
        _in_thread(task)
        publisher.publish({"text/plain": "the cell's"}, {"m": 1})
    assert got == [("display", {"text/plain": "chart"}, {})]
    assert publisher.shown == [({"text/plain": "the cell's"}, {"m": 1})]


def test_routing_nests_and_ends_with_the_block() -> None:
    outer: list[tuple[Any, ...]] = []
    inner: list[tuple[Any, ...]] = []
    with plain_streams() as (out, _):
        routing.install()
        with routing.routed(lambda *piece: outer.append(piece)):
            print("a", end="")
            with routing.routed(lambda *piece: inner.append(piece)):
                print("b", end="")
            print("c", end="")
        print("d", end="")
    assert _texts(outer) == [("stdout", "a"), ("stdout", "c")]
    assert _texts(inner) == [("stdout", "b")] and out.getvalue() == "d"


def test_install_twice_wraps_once_and_uninstall_puts_everything_back() -> None:
    publisher = Publisher()
    with plain_streams() as (out, err):
        routing.install(publisher)
        routed_out = sys.stdout
        routing.install(publisher)
        assert sys.stdout is routed_out is not out
        assert routing.unrouted("stdout") is out
        routing.uninstall()
        assert sys.stdout is out and sys.stderr is err
        assert "publish" not in vars(publisher)  # the class's own method again


def test_reroute_wraps_a_stream_that_replaced_the_router() -> None:
    """A terminal prompt swaps sys.stdout for its own proxy while it waits."""
    got: list[tuple[Any, ...]] = []
    proxy = io.StringIO()
    with plain_streams() as (out, _):
        assert routing.reroute() == {}  # nothing installed: nothing to do
        routing.install()
        sys.stdout = proxy
        assert routing.reroute() == {"stdout": proxy}
        assert routing.unrouted("stdout") is proxy
        with routing.routed(lambda *piece: got.append(piece)):
            print("task", end="")
        print("prompt", end="")
    assert _texts(got) == [("stdout", "task")]
    assert proxy.getvalue() == "prompt" and out.getvalue() == ""
