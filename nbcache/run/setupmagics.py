"""Line magics that set the kernel up for the cells after them, and a cell's leading ones
split from the code that follows them.

``%matplotlib``, ``%load_ext``, ``%reload_ext``, ``%config``, ``%autoreload`` and
``%aimport`` change how the kernel runs what follows (a backend, an extension, a
setting) and leave no value a cell's stored outputs depend on. A cell that begins
with such lines (``%matplotlib inline`` above a seed, an import), or with imports of
installed libraries and then such lines, runs as two cells would: the magics every
time (before those imports), then the rest cached like any cell, keyed after the
magics ran, as a plain run has them by then. A magic whose argument IPython expands
from the namespace (``$fmt``, ``{fmt}``) is not one of them.
"""

from __future__ import annotations

import ast
from typing import Any

from ..keys.modules import is_installed_module

__all__ = ["SETUP_MAGICS", "reads_namespace", "split_setup"]

SETUP_MAGICS = ("matplotlib", "load_ext", "reload_ext", "config", "autoreload", "aimport")


def split_setup(source: str) -> tuple[str, str]:
    """``source`` (as IPython transformed it) as its leading set-up magics and the code
    besides them; ``("", source)`` when it does not begin with such magics, or has no
    code besides them. Imports of installed libraries may come before them (``import
    numpy as np`` above ``%matplotlib inline``); the magics then run before those
    imports. Each part keeps its lines where they were (the other part's are blank in
    it), so a traceback and a listing number them as the cell does."""
    if "run_line_magic" not in source:
        return "", source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "", source
    magic: set[int] = set()  # the lines of the leading set-up magics
    code: set[int] = set()  # the lines of every other statement
    leading = True
    for statement in tree.body:
        span = range(statement.lineno, (statement.end_lineno or statement.lineno) + 1)
        if leading and _setup_magic(statement):
            magic.update(span)
            continue
        leading = leading and _installed_import(statement)
        code.update(span)
    if not magic or not code or not magic.isdisjoint(code):
        return "", source  # no magic, no code, or both on one line (`%...; x = 1`)
    lines = source.splitlines(keepends=True)
    setup = "".join(ln if n in magic else "\n" for n, ln in enumerate(lines[: max(magic)], 1))
    return setup, "".join("\n" if n in magic else ln for n, ln in enumerate(lines, 1))


def reads_namespace(setup: str) -> bool:
    """Whether the magics ``setup`` (a :func:`split_setup` first part) may read the
    notebook's variables: an extension's loader is handed the shell (``ip.user_ns``),
    a module ``%aimport`` loads may read ``__main__``, and ``%config X = value``
    evaluates ``value`` in the namespace unless it is a literal. What they read must be
    the values, not a lazy run's stand-ins."""
    for statement in ast.parse(setup).body:
        call: Any = getattr(statement, "value", None)
        name, argument = (arg.value for arg in call.args)
        if name in ("load_ext", "reload_ext", "aimport"):
            return True
        _, equals, value = argument.partition("=")
        if name == "config" and equals:
            try:
                ast.literal_eval(value.strip())
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return True
    return False


def _installed_import(statement: ast.stmt) -> bool:
    """Whether ``statement`` imports installed libraries alone: a module beside the
    notebook may set what the magics below it set (``matplotlib.use("agg")`` as it
    loads, which ``%matplotlib inline`` after it overrides), so they cannot run first."""
    if isinstance(statement, ast.Import):
        return all(is_installed_module(alias.name) for alias in statement.names)
    if isinstance(statement, ast.ImportFrom):
        return not statement.level and is_installed_module(statement.module or "")
    return False


def _setup_magic(statement: ast.stmt) -> bool:
    """Whether ``statement`` is ``get_ipython().run_line_magic('<setup magic>', '...')``."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "run_line_magic"
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.func.value.func, ast.Name)
        and call.func.value.func.id == "get_ipython"
        and not call.func.value.args
        and not call.keywords
        and len(call.args) == 2
    ):
        return False
    name, argument = call.args
    return (
        isinstance(name, ast.Constant)
        and name.value in SETUP_MAGICS
        and isinstance(argument, ast.Constant)
        and isinstance(argument.value, str)
        # `$fmt`, `{fmt}`: IPython expands them from the namespace, where a lazy run's
        # value may still be a stand-in, and an import below may bind them
        and not any(c in argument.value for c in "${")
    )
