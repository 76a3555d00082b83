"""A cell body run as IPython runs a cell: its statements executed, its last expression
evaluated and returned.

Every place a body runs uses this: the IPython adapter (with IPython's own
compiler, so ``from __future__`` lines and AST transformers apply, and its own
linecache entry under the cell's number), a background cell on a thread, and a
worker process or dask worker running :func:`nbcache.run.background.run_in_worker`.
What the body raises propagates unchanged, its traceback starting at the body's
first frame: nbcache's own frames are no part of the user's error.

A trailing ``;`` is the caller's to honour (see :func:`nbcache.run.output.hides_result`):
the body's value is returned either way, as IPython computes it either way.
"""

from __future__ import annotations

import ast
import linecache
import types
import uuid
from collections.abc import Callable
from typing import Any

from .output import NO_RESULT, from_user_code

__all__ = ["Compiler", "remember", "run_source", "run_tree", "split_last"]

# compile()'s signature as far as the body runner uses it; IPython's CachingCompiler
# is one too, and adds the ``from __future__`` flags earlier cells set.
Compiler = Callable[[Any, str, str], types.CodeType]


def split_last(tree: ast.Module) -> tuple[ast.Module, ast.Expression | None]:
    """The body's statements, and its last expression when the body ends with one."""
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        statements = ast.Module(body=tree.body[:-1], type_ignores=tree.type_ignores)
        return statements, ast.Expression(tree.body[-1].value)
    return tree, None


def run_tree(
    tree: ast.Module, filename: str, namespace: dict[str, Any], compiler: Compiler = compile
) -> Any:
    """Run a parsed body in ``namespace``: the last expression's value, or NO_RESULT.

    ``filename`` is the name the tree was parsed under: the user's exception
    propagates with its traceback from the first frame of that file on.
    """
    __tracebackhide__ = True
    statements, last = split_last(tree)
    try:
        exec(compiler(statements, filename, "exec"), namespace)
        if last is None:
            return NO_RESULT
        return eval(compiler(last, filename, "eval"), namespace)
    except BaseException as exc:  # noqa: BLE001 - the user's own, re-raised unchanged
        # Re-raising the exception being handled keeps its own cause and context.
        raise exc.with_traceback(from_user_code(exc.__traceback__, filename))  # noqa: B904


def run_source(source: str, namespace: dict[str, Any], filename: str = "<cell>") -> Any:
    """Parse ``source`` under ``filename`` and run it (see :func:`run_tree`).

    Raises:
        SyntaxError: ``source`` does not parse; it names ``filename`` and the line.
    """
    __tracebackhide__ = True
    return run_tree(ast.parse(source, filename), filename, namespace)


def remember(source: str, kind: str = "cell") -> str:
    """A new file name for ``source`` with its lines in linecache, so that a traceback
    through it shows them (``<background cell 1a2b3c4d>``)."""
    filename = f"<{kind} {uuid.uuid4().hex[:8]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return filename
