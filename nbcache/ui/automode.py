"""Turning auto mode on and off in an IPython shell: the input transformer that puts
``%%cache --auto`` in front of every cell auto mode caches (see nbcache.run.auto).

Left to IPython, as without nbcache: a cell that does not parse (IPython shows its
own SyntaxError, at the user's line), and a one-line cell IPython rewrites before
running it (``exit``, ``quit``, autocall, automagic). Before such a cell, or one of
another cell magic (``%%time``), every stand-in a lazy run left is loaded and every
waiting import made: the cell may read any name. The transformer is marked as
having side effects, so the terminal's check of whether typed input is complete
sees the user's code, not a cell magic (which would wait for a blank line).

A traceback of a cell auto mode wrapped starts at the user's first frame, as without
nbcache: the ``%%cache --auto`` call the user never wrote, and the frames it hides, are
taken out of it before IPython shows it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..keys.parsed import FUTURE_FLAGS, keep
from ..run.auto import AUTO_MAGIC, AutoMode, wraps
from ..run.cell import CellRunner
from ..run.shell import transformed_once

__all__ = ["auto_off", "auto_on", "transform_body", "wrapped"]

_ON: dict[int, Any] = {}  # shell -> its transformer and hooks
_DEPTH: dict[int, list[int]] = {}  # shell -> how many cells (or bodies) it executes now
_WRAPPED: dict[int, str] = {}  # shell -> the last cell auto mode wrapped, as typed
# shell -> that cell as IPython's static transforms made it, which its body's run needs
_TRANSFORMED: dict[int, tuple[str, str]] = {}


def wrapped(shell: Any, body: str) -> bool:
    """Whether ``body`` is the cell auto mode wrapped last: no ``%%cache`` line is
    above it, so its line 1 is the cell's line 1."""
    return _WRAPPED.get(id(shell)) == body


def transform_body(shell: Any, source: str) -> str:
    """Transform a magic's body as IPython does, never wrapping it in %%cache again."""
    depth = _DEPTH.get(id(shell))
    if depth is None:
        return shell.transform_cell(source)  # type: ignore[no-any-return]
    known = _TRANSFORMED.pop(id(shell), None)
    # the wrapped cell's static transforms, made a moment ago: what IPython's
    # transform_cell does besides them applies to one-line cells only
    static = known[1] if known is not None and known[0] == source else None
    if static is not None and len(static.splitlines()) != 1 and not shell.input_transformers_post:
        return static
    depth[0] += 1
    try:
        with _static_made(shell, source, static):
            return shell.transform_cell(source)  # type: ignore[no-any-return]
    finally:
        depth[0] -= 1


@contextmanager
def _static_made(shell: Any, source: str, static: str | None) -> Iterator[None]:
    """While in the block, the static transforms of ``source`` are ``static`` (None: made
    anew), once: IPython then does only its own dynamic part of a one-line cell (the
    prefilter, which reads the namespace) instead of tokenizing the cell again."""
    if static is None:
        yield
        return
    with transformed_once(shell.input_transformer_manager, source, static):
        yield


def auto_on(shell: Any, cells: CellRunner, auto: AutoMode) -> None:
    """Cache every cell of ``shell`` from its next cell on."""
    cells.auto = auto
    if id(shell) in _ON:
        return

    depth = _DEPTH.setdefault(id(shell), [0])  # a magic's body (%%time) is no cell

    def wrap(lines: list[str]) -> list[str]:
        # Runs after IPython's own clean-up (prompts, indentation), before it looks for
        # a cell magic, so the cell reaches %%cache as typed. A cell is transformed
        # before it executes; a magic that transforms its body does so while it does.
        if depth[0] or cells.auto is None:
            return lines
        cell = "".join(lines)
        if not wraps(cell) or _left_to_ipython(shell, cell, depth) is None:
            if cell.strip() and not cell.lstrip().startswith(("%%cache", "%%nocache")):
                # IPython runs it (``%%time``, a line it rewrites): it may read any name,
                # and must see every import restored cells made
                cells.bring_in(None)
                cells.loaded.clear()  # no record of this cell to list them in
            return lines
        _WRAPPED[id(shell)] = cell
        return [AUTO_MAGIC + "\n", *lines]

    wrap.has_side_effects = True  # type: ignore[attr-defined]

    def started() -> None:
        depth[0] += 1

    def ended() -> None:
        depth[0] = max(0, depth[0] - 1)  # an early error may skip pre_execute, never post

    shell.input_transformers_cleanup.append(wrap)
    shell.events.register("pre_execute", started)
    shell.events.register("post_execute", ended)
    own = vars(shell).get("showtraceback")
    shell.showtraceback = _trimming(shell.showtraceback)
    _ON[id(shell)] = (wrap, started, ended, own)


def _left_to_ipython(shell: Any, cell: str, depth: list[int]) -> str | None:
    """``cell`` as IPython's static transforms make it; None when IPython runs it itself:
    it does not parse, or it is one line that IPython's prefilter rewrites (``exit``,
    autocall, automagic)."""
    depth[0] += 1  # transforming it here must not wrap it
    try:
        python: str = shell.input_transformer_manager.transform_cell(cell)
    except SyntaxError:
        return None  # IPython says so as it transforms the cell
    finally:
        depth[0] -= 1
    if len(python.splitlines()) == 1 and _rewritten(shell, python.rstrip("\n")):
        return None
    try:
        tree = shell.compile.ast_parse(python)
    except (SyntaxError, ValueError):
        return None
    if not shell.compile.flags & FUTURE_FLAGS:  # as ast.parse parses it: the analysis's
        keep(python, tree)
    _TRANSFORMED[id(shell)] = (cell, python)
    return python


def _rewritten(shell: Any, line: str) -> bool:
    from IPython.core.splitinput import LineInfo

    manager = shell.prefilter_manager
    with shell.builtin_trap:
        handler = manager.find_handler(LineInfo(line))
    return handler is not manager.get_handler_by_name("normal")


def auto_off(shell: Any, cells: CellRunner) -> None:
    """Back to caching only ``%%cache`` cells."""
    cells.auto = None
    hooks = _ON.pop(id(shell), None)
    _DEPTH.pop(id(shell), None)
    _WRAPPED.pop(id(shell), None)
    _TRANSFORMED.pop(id(shell), None)
    if hooks is None:
        return
    wrap, started, ended, own = hooks
    if wrap in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(wrap)
    shell.events.unregister("pre_execute", started)
    shell.events.unregister("post_execute", ended)
    if own is None:
        vars(shell).pop("showtraceback", None)  # the class's method again
    else:
        shell.showtraceback = own


def _trimming(show: Any) -> Any:
    """IPython's ``showtraceback`` (``show``), first taking the frames of auto mode's
    ``%%cache --auto`` call out of the traceback it is about to show."""

    def showtraceback(*args: Any, **kwargs: Any) -> Any:
        given = kwargs.get("exc_tuple", args[0] if args else None)
        tb = given[2] if isinstance(given, tuple) and len(given) == 3 else sys.exc_info()[2]
        _drop_auto_call(tb)
        return show(*args, **kwargs)

    return showtraceback


@functools.cache
def _machinery_folders() -> tuple[str, ...]:
    """The folders of nbcache's and IPython's code: frames there are not the user's."""
    import IPython

    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (ours + os.sep, os.path.dirname(os.path.abspath(IPython.__file__)) + os.sep)


def _drop_auto_call(tb: Any) -> None:
    """Link the frame before auto mode's call of ``%%cache --auto`` (IPython's
    ``run_code``) to the first frame after it that is not IPython's or nbcache's: the
    user's cell. Left as it is when there is none (an error of nbcache's own)."""
    while tb is not None and tb.tb_next is not None:
        code = tb.tb_next.tb_frame.f_code
        if "run_cell_magic" in code.co_names and "--auto" in code.co_consts:
            user = tb.tb_next.tb_next
            while user is not None and _machinery(user.tb_frame):
                user = user.tb_next
            if user is not None:
                tb.tb_next = user
            return
        tb = tb.tb_next


def _machinery(frame: Any) -> bool:
    filename = frame.f_code.co_filename
    return (
        filename.startswith(_machinery_folders())
        or filename.startswith("<decorator-gen-")
        or bool(frame.f_locals.get("__tracebackhide__"))
    )
