"""The IPython side of running a cell: transform, compile, execute, publish.

A cached cell's body runs the way ``%%time`` runs it: the cell is transformed
(so ``%magic`` and ``!shell`` lines inside it work) and parsed by IPython, its
AST transformers applied, and the body runner (:mod:`nbcache.run.body`) executes
the statements in the user namespace with IPython's compiler and evaluates and
returns the last expression, if any, so IPython's display hook shows it once and
records it in ``Out``.  The body is registered in IPython's linecache under the
cell's own number, with its lines where the user sees them, so a traceback points
at the user's line; nbcache's own frames are hidden from it.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..keys.standin import StandIn
from ..run.auto import auto_call
from ..run.body import run_tree
from ..run.output import NO_RESULT, UNSTORED
from ..run.report import Card, CellReport
from ..tasks.task import Task
from .automode import transform_body, wrapped
from .status import publish_status
from .terminal import EchoingCard, is_terminal, terminal_output
from .widgets import make_card, widgets_wanted

__all__ = ["NO_RESULT", "IPythonShell"]


class IPythonShell:
    """What ``%%cache`` needs from an ``InteractiveShell``."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.cell_id: str | None = None  # set by the pre_run_cell event when the front end sends it
        # a resumed cell's line: its cell, its display id, what it said
        self._resumed: tuple[int, str, CellReport] | None = None
        self._unmarked: str | None = None  # the last body transformed of a cell auto mode wrapped

    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns  # type: ignore[no-any-return]

    @property
    def display_publisher(self) -> Any:
        return self.shell.display_pub

    def transform(self, cell: str) -> str:
        source = transform_body(self.shell, cell)
        self.took(cell, source)
        return source

    def took(self, cell: str, source: str) -> None:
        """``cell`` runs as ``source``, transformed before (a batch decides first): its
        lines keep their numbers, and IPython's history holds it, not auto mode's call."""
        self._unmarked = source if wrapped(self.shell, cell) else None
        if self._unmarked is not None:
            _unwrap_history(self.shell, cell, source)

    def publish(
        self, data: dict[str, Any], metadata: dict[str, Any] | None = None, **shown: Any
    ) -> None:
        self.shell.display_pub.publish(data=data, metadata=metadata or {}, **shown)

    @property
    def widgets(self) -> bool:
        """Whether cards are ipywidgets (a Jupyter kernel) or text (see nbcache.ui.widgets)."""
        return widgets_wanted(self.shell)

    def report(self, report: CellReport) -> None:
        """The status line: a widget in a Jupyter kernel whose text form is the line itself
        (what terminals, nbconvert and viewers without widgets show)."""
        cell = self.shell.execution_count
        resumed, self._resumed = self._resumed, None
        publish: Callable[[dict[str, Any], dict[str, Any] | None], None]
        if report.outcome == "resumed":  # the cell goes on: its last line replaces this one
            self._resumed = (cell, uuid.uuid4().hex, report)
            publish = functools.partial(self._publish_line, self._resumed[1], False)
        elif resumed is not None and resumed[0] == cell:
            publish = functools.partial(self._publish_line, resumed[1], True)
            if report.resumed is None:  # the line it replaces said where the run resumed
                report = dataclasses.replace(report, resumed=resumed[2].resumed)
        else:
            publish = self.publish
        publish_status(report, self.widgets, publish)

    def _publish_line(
        self, line: str, update: bool, data: dict[str, Any], metadata: dict[str, Any] | None
    ) -> None:
        """Publish a status line that a later one replaces (``update``): one line per cell."""
        self.shell.display_pub.publish(
            data=data, metadata=metadata or {}, transient={"display_id": line}, update=update
        )

    def card(self, task: Task[Any]) -> Card:
        if self.widgets or not is_terminal(self.shell):
            return make_card(task, self.widgets, self.display_object, self.show_text)
        # Terminal IPython: the body's output shows as it comes, never over the prompt.
        out = terminal_output(self.shell)
        card = make_card(task, False, self.display_object, out.line)
        return EchoingCard(card, out.write)

    def display_object(self, obj: Any) -> Any:
        """Show ``obj``; the handle that can replace it (a card's text form, once ended)."""
        from IPython.display import display

        return display(obj, display_id=True)  # type: ignore[no-untyped-call]

    def show_text(self, line: str) -> None:
        print(line, flush=True)

    @contextmanager
    def paging(self, add: Callable[[Any, int], None]) -> Iterator[None]:
        """Record what goes to the pager while still paging it: a hook first in IPython's
        ``show_in_pager`` chain that notes the page and lets the next hook show it."""
        from IPython.core.error import TryNext

        def hook(shell: Any, data: Any, start: int = 0, *args: Any, **kwargs: Any) -> None:
            add(data, start)
            raise TryNext

        self.shell.set_hook("show_in_pager", hook, 0)
        try:
            yield
        finally:
            chain = self.shell.hooks.show_in_pager.chain
            chain[:] = [(p, f) for p, f in chain if getattr(f, "__func__", None) is not hook]

    def page(self, data: Any, start: int) -> None:
        from IPython.core import page

        page.page(data, start)

    def show_result(
        self, value: Any, shown: tuple[dict[str, Any], dict[str, Any]] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """What IPython's display hook does with a cell's value (``Out[n]``, ``_``, the
        ``execute_result``), with the formatting recorded on a miss replayed on a hit, so
        a hit shows what the miss showed even where a repr depends on the moment."""
        hook = self.shell.displayhook
        hook.start_displayhook()
        hook.write_output_prompt()
        data, meta = shown if shown is not None else hook.compute_format_data(value)
        if value is not UNSTORED:  # a result that would not pickle: shown, not in Out
            _loaded_results(self.shell)
            hook.update_user_ns(value)
            hook.fill_exec_result(value)
        if data:
            hook.write_format_data(data, meta)
            hook.log_output(data)
        hook.finish_displayhook()
        return data, meta

    def flush_figures(self) -> None:
        """Show the cell's pending inline matplotlib figures now, while output is recorded.

        The inline backend shows them after the cell, from a post_execute hook:
        too late to be part of the cached output.
        """
        inline = sys.modules.get("matplotlib_inline.backend_inline")
        flush = getattr(inline, "flush_figures", None)
        if flush is not None:
            flush()

    def cell_number(self) -> int:
        """The In[n] of the cell being run (IPython counts it up before running it)."""
        mapping = getattr(self.shell.compile, "_filename_map", {})
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None:
            number = mapping.get(frame.f_code.co_filename)
            if number is not None:
                return int(number)
            frame = frame.f_back
        return int(self.shell.execution_count)

    def execute(
        self, source: str, namespace: dict[str, Any] | None = None, number: int | None = None
    ) -> Any:
        """Run ``source`` in the user namespace (or ``namespace``); the last expression's
        value, or NO_RESULT. ``number`` is the cell's In[n], which a background cell
        reads before its thread starts: by then the prompt may have counted on.

        The user's own exception propagates with a traceback that starts at
        the user's code.
        """
        __tracebackhide__ = True
        # Line n of the body is line n + 1 of the cell, after %%cache; auto mode shows none
        # (and a part of the cell it wrapped, its set-up magics or the code after them, keeps
        # its lines where they were: nbcache.run.setupmagics).
        unmarked = self._unmarked is not None and _part_of(source, self._unmarked)
        padded = source if unmarked else "\n" + source
        compiler = self.shell.compile
        number = self.cell_number() if number is None else number
        # a part lists the cell's lines around its own, as a traceback without nbcache does
        listed = self._unmarked if unmarked and self._unmarked is not None else padded
        filename = compiler.cache(listed, number, raw_code=padded)
        tree = self.shell.transform_ast(compiler.ast_parse(padded, filename=filename))
        namespace = self.user_ns if namespace is None else namespace
        return run_tree(tree, filename, namespace, compiler)


def _part_of(source: str, cell: str) -> bool:
    """Whether ``source`` is ``cell`` with some of its lines blank, on their own lines."""
    part, whole = source.split("\n"), cell.split("\n")
    return len(part) <= len(whole) and all(
        a == b or not a for a, b in zip(part, whole[: len(part)], strict=True)
    )


def _unwrap_history(shell: Any, cell: str, source: str) -> None:
    """``In[n]`` (and ``_ih``, ``%history``) of the cell auto mode wrapped: the cell as IPython
    transformed it, as without nbcache, not the call of ``%%cache`` the user never wrote.
    The raw input (``_i``, ``_iN``) is the user's already. Only the call of this very
    ``cell``: transformed before IPython kept it, the last entry is another cell's."""
    history: Any = getattr(shell, "history_manager", None)
    parsed = getattr(history, "input_hist_parsed", None)
    if not parsed or str(parsed[-1]) != auto_call(cell):
        return
    wrapped, parsed[-1] = parsed[-1], source.rstrip("\n")
    with history.db_input_cache_lock:  # written to the history database later, in batches
        cache = history.db_input_cache
        if cache and cache[-1][1] == wrapped:
            cache[-1] = (cache[-1][0], parsed[-1], cache[-1][2])


def _loaded_results(shell: Any) -> None:
    """Where IPython keeps ``_``, ``__`` and ``___`` besides the namespace (its display hook,
    and the hidden names it compares them with), the value a lazy run loaded since in
    place of the stand-in: IPython moves the three on only while the namespace holds
    what it put there (else the user bound ``_`` and it leaves them be)."""
    hook, namespace, hidden = shell.displayhook, shell.user_ns, shell.user_ns_hidden
    for name in ("_", "__", "___"):
        held = getattr(hook, name, None)
        loaded = getattr(held, "loaded", None) if type(held) is StandIn else None
        if loaded and namespace.get(name) is loaded[0]:
            setattr(hook, name, loaded[0])
            if hidden.get(name) is held:
                hidden[name] = loaded[0]
