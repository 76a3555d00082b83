"""A background cell's output in terminal IPython: shown as it is printed, never over the
prompt, and still recorded into its entry.

Terminal IPython draws its prompt with prompt_toolkit, inside ``patch_stdout``: while
the prompt waits, ``sys.stdout`` is a proxy that prints above it. That proxy
replaced nbcache's router (:mod:`nbcache.run.routing`), so a task thread's prints
reached the screen but not its entry. So while a terminal shell has a background
task, IPython's prompt uses a ``patch_stdout`` of nbcache's that sets the streams
to routers in front of the proxy, straight from the routers in place before: there
is no moment in which a task's print goes unrecorded. The task's output is written
to the proxy, above the prompt. (Where IPython has no such name to replace, the
router is put in front of the proxy as the prompt starts.) With ``--simple-prompt``
there is no proxy: output that arrives while the prompt waits starts on a line of
its own and the prompt is shown again under it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..run import routing

__all__ = [
    "EchoingCard",
    "TerminalOutput",
    "close_terminal_output",
    "is_terminal",
    "terminal_output",
]


def is_terminal(shell: Any) -> bool:
    """Whether ``shell`` is terminal IPython (not a kernel, not a bare InteractiveShell)."""
    return any(cls.__name__ == "TerminalInteractiveShell" for cls in type(shell).__mro__)


class TerminalOutput:
    """Writes a task's output to terminal IPython's screen from any thread."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._lock = threading.Lock()
        self._proxy: dict[str, TextIO] = {}  # the prompt's proxies while the prompt waits
        self._plain = {name: routing.unrouted(name) for name in ("stdout", "stderr")}
        self._busy = True  # a cell runs (the one that started the task, now)
        self._pending = {"stdout": "", "stderr": ""}  # simple prompt: a line not ended yet
        self._patched: tuple[Any, Any] | None = self._patch_prompt()
        shell.events.register("pre_execute", self._cell_starts)
        shell.events.register("post_run_cell", self._cell_ended)

    def _patch_prompt(self) -> tuple[Any, Any] | None:
        """Give IPython's prompt a ``patch_stdout`` that keeps task output routed; the
        module and what it had, to put back."""
        module = sys.modules.get("IPython.terminal.interactiveshell")
        original = getattr(module, "patch_stdout", None)
        try:
            from prompt_toolkit.patch_stdout import StdoutProxy
        except ImportError:
            return None
        if original is None or not is_terminal(self._shell):
            return None

        @contextmanager
        def patch_stdout(raw: bool = False) -> Iterator[None]:
            with StdoutProxy(raw=raw) as proxy:
                saved = sys.stdout, sys.stderr
                with self._lock:
                    self._proxy = {"stdout": proxy, "stderr": proxy}  # type: ignore[dict-item]
                # From the routers in place to routers in front of the proxy, at once.
                sys.stdout = routing.routed_stream("stdout", proxy)  # type: ignore[arg-type]
                sys.stderr = routing.routed_stream("stderr", proxy)  # type: ignore[arg-type]
                try:
                    yield
                finally:
                    sys.stdout, sys.stderr = saved
                    with self._lock:
                        self._proxy = {}

        module.patch_stdout = patch_stdout  # type: ignore[union-attr]
        return module, (original, patch_stdout)

    def close(self) -> None:
        if self._patched is not None:
            module, (original, ours) = self._patched
            self._patched = None
            if module.patch_stdout is ours:  # someone else's since stays theirs
                module.patch_stdout = original
        for event, hook in (
            ("pre_execute", self._cell_starts),
            ("post_run_cell", self._cell_ended),
        ):
            try:
                self._shell.events.unregister(event, hook)
            except ValueError:
                pass  # already gone

    def _cell_starts(self) -> None:
        with self._lock:
            self._busy = True
            self._proxy.clear()

    def _cell_ended(self, _result: Any = None) -> None:
        with self._lock:
            self._busy = False
        app = getattr(getattr(self._shell, "pt_app", None), "app", None)
        if app is not None and self._patched is None:
            app.pre_run_callables.append(self._prompt_starts)

    def _prompt_starts(self) -> None:
        """Within ``patch_stdout``, as the prompt starts: route in front of its proxy."""
        with self._lock:
            self._proxy = routing.reroute()

    def line(self, text: str) -> None:
        """One line of nbcache's own (the card's), on stdout."""
        self.write("stdout", text + "\n")

    def write(self, name: str, text: str) -> None:
        """Show ``text`` on ``sys.<name>`` of the terminal, not over the prompt."""
        with self._lock:
            proxy = self._proxy.get(name)
            if proxy is not None and not getattr(proxy, "closed", False):
                proxy.write(text)
                proxy.flush()
                return
            if self._busy or self._pt_prompt():
                stream = self._plain[name]
                stream.write(text)
                stream.flush()
                return
            self._above_simple_prompt(name, text)

    def _pt_prompt(self) -> bool:
        return getattr(self._shell, "pt_app", None) is not None

    def _above_simple_prompt(self, name: str, text: str) -> None:
        """A plain ``input()`` prompt waits: whole lines on a line of their own, then the
        prompt again (what was typed so far is still in the line being read)."""
        text = self._pending[name] + text
        complete, _, rest = text.rpartition("\n")
        self._pending[name] = rest
        if not complete:
            return
        stream = self._plain[name]
        prompt = "".join(token[1] for token in self._shell.prompts.in_prompt_tokens())
        stream.write(f"\n{complete}\n")
        stream.flush()
        out = self._plain["stdout"]
        out.write(prompt)
        out.flush()


_OUTPUTS: dict[int, TerminalOutput] = {}


def terminal_output(shell: Any) -> TerminalOutput:
    """The one :class:`TerminalOutput` of ``shell``, made on first use."""
    found = _OUTPUTS.get(id(shell))
    if found is None:
        found = _OUTPUTS[id(shell)] = TerminalOutput(shell)
    return found


def close_terminal_output(shell: Any) -> None:
    found = _OUTPUTS.pop(id(shell), None)
    if found is not None:
        found.close()


class EchoingCard:
    """A text card whose body's output is also written to the terminal as it comes."""

    def __init__(self, card: Any, write: Callable[[str, str], None]) -> None:
        self._card = card
        self._write = write

    def output(self, kind: str, *payload: Any) -> None:
        self._card.output(kind, *payload)
        if kind in ("stdout", "stderr"):
            self._write(kind, str(payload[0]))
        elif kind == "display" and payload and isinstance(payload[0], dict):
            text = payload[0].get("text/plain")
            if isinstance(text, str):
                self._write("stdout", text + "\n")

    def finished(self, report: Any) -> None:
        self._card.finished(report)
