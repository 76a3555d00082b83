"""In a kernel ``nbcache run`` drives: a run of cells restored in one request.

Each cell is run exactly as an execute request of its own runs it
(``shell.run_cell`` with its id, its history stored, the prompt counter moved on,
every pre- and post-run hook), so the namespace, ``In``/``Out``/``_``, the cell log
and whatever a restore puts back are as the per-cell path leaves them. Only the
messages the kernel publishes for it (streams, displays, its result) are kept for the
driver instead of sent, and the driver writes them into the cell (see
:mod:`nbcache.notebooks.batch`).

Before a cell runs, auto mode's decision for it is taken (the same one its run takes,
in the same state): a cell that would not restore ends the batch unrun, and the
driver executes it, and the cells after it, in requests of their own. That decision
is kept for the cell's run, so a restored cell is keyed once. A cell that reads
IPython's history (``In``, ``_i``, ``Out``, ``_``) never restores (see
nbcache.run.decide), so it ends a batch as any cell that runs. A kernel with a
pre-run hook nbcache does not know (``%autoreload`` reloads modules there) batches
nothing.
"""

from __future__ import annotations

import ast
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..run.auto import auto_call
from ..run.cellrun import CellOptions
from ..run.shell import transformed_once

__all__ = ["restore"]

# What a cell publishes that the executed notebook shows: kept for the driver.
CAPTURED = frozenset(
    {"stream", "display_data", "execute_result", "update_display_data", "clear_output", "error"}
)
# The pre-run hooks a batch knows change nothing a decision reads.
_KNOWN_HOOKS = ("nbcache.", "IPython.core.", "ipykernel.")
# What auto mode gives every cell it wraps (``%%cache --auto``).
AUTO_OPTIONS = CellOptions(quiet=True, auto=True)


def restore(cells_file: str, out_file: str) -> None:
    """Restore the cells in ``cells_file`` (a JSON list of ``{"index", "id", "source"}``)
    in order until one would not restore, and write to ``out_file`` what each published.
    Called by the driver through an empty request's user expression: no cell of its own."""
    import IPython

    shell: Any = IPython.get_ipython()
    with open(cells_file, encoding="utf-8") as f:
        given = json.load(f)
    runner = _runner(shell)
    session = getattr(getattr(shell, "kernel", None), "session", None)
    if runner is None or session is None or not _known_hooks(shell):
        _write(out_file, {"off": True, "cells": []})
        return
    ahead = Ahead.on(runner)
    done: list[dict[str, Any]] = []
    stopping: list[dict[str, Any]] = []  # the cell the batch stopped at, unrun
    # what ran is said whatever happens next: the driver must not send those cells again
    with _captured(session) as messages, _said(out_file, done, stopping):
        for cell in given:
            started = time.time()
            raw = str(cell["source"])
            python = _transformed(shell, raw)
            body = _body(python, raw) if python is not None else None
            if python is None or body is None or not ahead.restores(cell.get("id"), body):
                ahead.forget()  # the cell runs in a request of its own, decided there
                stopping.append({"index": cell["index"], "messages": list(messages)})
                break
            count = shell.execution_count
            try:
                # IPython's transform of raw is the one the decision was taken for:
                # tokenizing it again cost a restored cell a fifth of nbcache's time
                with transformed_once(shell, raw, python):
                    result = shell.run_cell(raw, store_history=True, cell_id=cell.get("id"))
            finally:
                ahead.forget()
            sys.stdout.flush()  # the stream messages are sent now, before the next cell's
            sys.stderr.flush()
            done.append(
                {
                    "index": cell["index"],
                    "execution_count": count,
                    "messages": list(messages),
                    "times": [started, time.time()],
                    "failed": not result.success,
                }
            )
            messages.clear()
            if not result.success:
                break


@contextmanager
def _said(path: str, done: list[dict[str, Any]], stopping: list[dict[str, Any]]) -> Iterator[None]:
    try:
        yield
    finally:
        _write(path, {"off": False, "cells": done, "stopped": stopping[0] if stopping else None})


def _write(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def _runner(shell: Any) -> Any:
    """The shell's cell runner, when nbcache is loaded with auto mode on."""
    magics = shell.magics_manager.registry.get("NbcacheMagics") if shell is not None else None
    runner = getattr(magics, "cells", None)
    return runner if getattr(runner, "auto", None) is not None else None


def _known_hooks(shell: Any) -> bool:
    for event in ("pre_execute", "pre_run_cell"):
        for hook in shell.events.callbacks.get(event, []):
            module = getattr(hook, "__module__", None) or ""
            if not module.startswith(_KNOWN_HOOKS):
                return False
    return True


def _transformed(shell: Any, raw: str) -> str | None:
    """``raw`` as IPython transforms it to run it, or None: it does not transform."""
    try:
        return str(shell.transform_cell(raw))
    except (SyntaxError, ValueError):
        return None


def _body(python: str, raw: str) -> str | None:
    """The body auto mode's ``%%cache --auto`` gets in ``python`` (the raw cell ``raw``
    as IPython transforms it), or None: a cell IPython runs itself (another cell magic,
    a line it rewrites, one that does not parse)."""
    # Mostly the body is the raw cell as typed (IPython ends it with a newline): a call
    # that spells it out, character for character, is what the parse below would read,
    # without parsing the cell again.
    typed = raw if raw.endswith("\n") else raw + "\n"
    if python == auto_call(typed) + "\n":  # else (another spelling) read by parsing it
        return typed
    try:
        tree = ast.parse(python)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "run_cell_magic"
        and len(call.args) == 3
        and not call.keywords
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args)
    ):
        return None
    name, line, body = (a.value for a in call.args if isinstance(a, ast.Constant))
    return str(body) if (name, str(line).strip()) == ("cache", "--auto") else None


class Ahead:
    """The runner's decision, taken for a cell before it runs and kept for its run, with
    the source it was taken for (the body transformed as the run transforms it)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.decide = runner.decide  # the runner's own, bound before this replaces it
        self.transform = runner.shell.transform  # the shell's own, likewise
        self.kept: tuple[tuple[Any, ...], Any] | None = None
        self.made: tuple[str, str] | None = None  # (body, source) for the run's transform

    @classmethod
    def on(cls, runner: Any) -> Ahead:
        found = vars(runner).get("decide")
        if isinstance(found, Ahead):
            return found
        ahead = cls(runner)
        runner.decide = ahead
        runner.shell.transform = ahead.transformed
        return ahead

    def transformed(self, body: str) -> str:
        """The runner's transform of ``body``: the one its decision was taken for, once,
        as a request of its own transforms the body before its decision."""
        made, self.made = self.made, None
        if made is not None and made[0] == body:
            took = getattr(self.runner.shell, "took", None)
            if took is not None:  # what the shell's transform sets besides, now it runs
                took(body, made[1])
            return made[1]
        return str(self.transform(body))

    def forget(self) -> None:
        """Nothing kept outlives the run of the cell it was kept for."""
        self.kept = self.made = None

    def __call__(self, source: str, options: CellOptions) -> Any:
        kept, self.kept = self.kept, None  # one use, for the very next decision only
        if kept is not None and kept[0] == (self.runner.shell.cell_id, source, options):
            return kept[1]
        return self.decide(source, options)

    def restores(self, cell_id: str | None, body: str) -> bool:
        """Whether the cell ``body`` restores if it runs now; its decision kept."""
        shell = self.runner.shell
        shell.cell_id = cell_id or None  # as its pre-run hook sets it
        self.made = None
        source = self.transform(body)
        decision = self.decide(source, AUTO_OPTIONS)
        self.kept = ((shell.cell_id, source, AUTO_OPTIONS), decision)
        self.made = (body, source)
        return bool(decision.restores)


@contextmanager
def _captured(session: Any) -> Iterator[list[list[Any]]]:
    """While in the block, what the kernel would publish of a cell's output is kept as
    ``[type, content as sent, time]`` instead (from any thread: streams are sent by
    ipykernel's IO thread)."""
    kept: list[list[Any]] = []
    own = vars(session).get("send")
    send = session.send

    def keep(stream: Any, msg_or_type: Any, content: Any = None, *args: Any, **kw: Any) -> Any:
        is_msg = isinstance(msg_or_type, dict)
        kind = msg_or_type["header"]["msg_type"] if is_msg else msg_or_type
        if kind not in CAPTURED:
            return send(stream, msg_or_type, content, *args, **kw)
        body = msg_or_type["content"] if is_msg else content
        kept.append([kind, json.loads(session.pack(body)), time.time()])
        return msg_or_type if is_msg else session.msg(kind, content)

    session.send = keep
    try:
        yield kept
    finally:
        if own is None:
            del session.send
        else:
            session.send = own
