"""A cell whose code does not parse shows IPython's own SyntaxError, as without nbcache.

IPython reports a cell that does not parse before running anything: its
``SyntaxError``, the cell's line and a caret, no frames.  A ``%%cache`` cell is
different: IPython turns it into a call of the magic, which parses, and the body
would fail inside nbcache, with nbcache's frames.  So the body is parsed while
the cell is transformed, as IPython parses a plain cell; an error found there is
raised from the transformer, which IPython shows exactly as its own (and the cell
counts as failed before it ran, as a plain cell that does not parse does).
Auto mode does not wrap a cell that does not parse at all (see
:mod:`nbcache.ui.automode`).
"""

from __future__ import annotations

from typing import Any

from .automode import transform_body

__all__ = ["check_off", "check_on", "syntax_error"]

_MAGIC = "%%cache"
_ON: dict[int, Any] = {}


def syntax_error(shell: Any, python: str, first_line: int = 1) -> SyntaxError | None:
    """The SyntaxError compiling ``python`` (IPython's transformed code, whose line 1 is
    line ``first_line`` of the cell) raises, as the body runs it; None if it parses."""
    try:
        shell.compile.ast_parse("\n" * (first_line - 1) + python)
    except (SyntaxError, ValueError) as exc:
        if isinstance(exc, SyntaxError):
            return exc
        return SyntaxError(str(exc))  # a null byte: what IPython says of it too
    return None


def check_on(shell: Any) -> None:
    """Check the body of each ``%%cache`` cell of ``shell`` while it is transformed."""
    if id(shell) in _ON:
        return

    def check(lines: list[str]) -> list[str]:
        if not lines or lines[0].split(maxsplit=1)[:1] != [_MAGIC]:
            return lines
        cell = "".join(lines)
        try:
            python = transform_body(shell, "".join(lines[1:]))
        except SyntaxError:
            return lines  # the body is no IPython input at all: the magic says so
        error = syntax_error(shell, python, first_line=2)
        if error is None:
            return lines
        # What IPython names the cell when it shows the error: `Cell In[n], line m`.
        error.filename = shell.compile.cache(cell, shell.execution_count, raw_code=cell)
        raise error

    # Not for checking whether typed input is complete: the terminal must see the code.
    check.has_side_effects = True  # type: ignore[attr-defined]
    shell.input_transformers_cleanup.append(check)
    _ON[id(shell)] = check


def check_off(shell: Any) -> None:
    check = _ON.pop(id(shell), None)
    if check is not None and check in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(check)
