"""A cell's notebook functions and classes load before its other values, bound by name.

Unpickling a value may evaluate code that names a notebook function: a statsmodels
model fitted from the formula ``y ~ double_it(x)`` evaluates that formula again as it
loads, looking ``double_it`` up in its caller's frames (nbcache loads from a frame
whose globals are the notebook's namespace). In the plain run the cell had bound
``double_it`` before it fitted the model; an entry loaded as one dict binds nothing
until everything is loaded, so the model could never load, and the cell ran again on
every run.

:func:`code_first` gives a cell's variables a pickled form whose notebook code loads
first and is bound under its names in the namespace the load reads, for that load
only: when it ends, loaded or not, those names are put back as they were (a hit binds
them again as it restores; a failed load leaves nothing behind). A load on another
thread than the main one binds into a copy of the namespace: a background load must
not change names a running cell sees.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["bind_first", "binding_first", "code_first", "joined"]

_UNBOUND = object()
# the namespace a load reads, and what its names held before the load bound code there
_BINDING: ContextVar[tuple[dict[str, Any], dict[str, Any]] | None] = ContextVar(
    "nbcache_binding_first", default=None
)


def _notebook_code(value: object) -> bool:
    """A function or class written in the notebook (asks types and dicts only: a
    ``__getattr__`` may raise anything)."""
    if type(value) is types.FunctionType:
        return value.__globals__.get("__name__") == "__main__"
    return isinstance(value, type) and vars(value).get("__module__") == "__main__"


class _CodeFirst(dict[str, Any]):
    """Names to values that pickle with their notebook code first (see the module)."""

    def __reduce__(self) -> tuple[Any, ...]:
        code = _Bound({k: v for k, v in self.items() if _notebook_code(v)})
        rest = {k: v for k, v in self.items() if k not in code}
        return (joined, (code, rest, list(self)))


class _Bound(dict[str, Any]):
    def __reduce__(self) -> tuple[Any, ...]:
        return (bind_first, (dict(self),))


def code_first(variables: dict[str, Any]) -> dict[str, Any]:
    """``variables`` in the form that loads its notebook code first, when it holds both
    code and other values; else itself."""
    has_code = [_notebook_code(v) for v in variables.values()]
    if any(has_code) and not all(has_code):
        return _CodeFirst(variables)
    return variables


def bind_first(code: dict[str, Any]) -> dict[str, Any]:
    """Unpickling: bind ``code`` in the namespace the current load reads, until it ends."""
    binding = _BINDING.get()
    if binding is not None:
        namespace, saved = binding
        for name, value in code.items():
            saved.setdefault(name, namespace.get(name, _UNBOUND))
            namespace[name] = value
    return code


def joined(code: dict[str, Any], rest: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """Unpickling: the variables again, in their order."""
    return {name: code[name] if name in code else rest[name] for name in order}


@contextmanager
def binding_first(namespace: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The globals a load runs with: its notebook code is bound there as it loads.

    On the main thread that is ``namespace`` itself, each name holding again what it
    held before when the block ends. Another thread gets a copy of ``namespace``: a
    background load must not change a name a running cell reads.
    """
    if threading.current_thread() is not threading.main_thread():
        copy = dict(namespace)
        token = _BINDING.set((copy, {}))
        try:
            yield copy
        finally:
            _BINDING.reset(token)
        return
    saved: dict[str, Any] = {}
    token = _BINDING.set((namespace, saved))
    try:
        yield namespace
    finally:
        _BINDING.reset(token)
        for name, before in saved.items():
            if before is _UNBOUND:
                namespace.pop(name, None)
            else:
                namespace[name] = before
