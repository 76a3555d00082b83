"""The notebook's namespace values load into, and notebook classes restored as the live
class of the same definition.

cloudpickle saves a class defined in a notebook by value and loads a new class from
it. When the notebook's namespace already holds that class (a cell that is not cached
defined it), a restored instance was then of another class than the live one:
``isinstance``, ``==`` of a dataclass and enum members all said no where the plain run
said yes. A class saved here carries the digest of its definition (the keys' own,
registered by :mod:`nbcache.keys`: nothing here imports a layer above); on loading,
the live class of the same name and digest is used as it is, and any other is built
as cloudpickle builds it.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "before_code",
    "before_code_pending",
    "importing_after",
    "live_or_rebuilt",
    "main_namespace",
    "notebook_namespace",
    "reduce_main_class",
    "restoring_into",
    "set_class_digest",
    "set_class_state",
]

_MAIN_NAMESPACE: ContextVar[dict[str, Any] | None] = ContextVar("nbcache_main", default=None)
# called once, before the first notebook function or class of a load is rebuilt
_BEFORE_CODE: ContextVar[list[Callable[[], object]] | None] = ContextVar(
    "nbcache_before_code", default=None
)
_digest: list[Callable[[type], str]] = []  # the keys' digest of a class, once registered
_live: weakref.WeakSet[type] = weakref.WeakSet()  # live classes a load returned as they are


@contextmanager
def restoring_into(
    namespace: dict[str, Any], before_code: Callable[[], object] | None = None
) -> Iterator[None]:
    """Within this block, notebook functions load bound to ``namespace``, not ``__main__``.

    For a shell whose user namespace is not ``sys.modules["__main__"]``, and for tests.
    ``before_code`` is called once, before the first notebook class or method is
    rebuilt, or a module not loaded yet is imported (:func:`before_code`): unpickling
    may run the one (``__setstate__``, ``__hash__`` of a set's members), and the other
    may read the namespace (a formula model evaluates ``np.log(x)`` there); what they
    read must be there first (a lazy run's waiting imports). A function alone is not
    called by loading it (unless a ``__reduce__`` names it: not covered).
    """
    token = _MAIN_NAMESPACE.set(namespace)
    hook = _BEFORE_CODE.set([before_code] if before_code is not None else None)
    try:
        yield
    finally:
        _BEFORE_CODE.reset(hook)
        _MAIN_NAMESPACE.reset(token)


def main_namespace() -> dict[str, Any]:
    """The namespace notebook code loads into: the one given to :func:`restoring_into`,
    else ``__main__``'s."""
    namespace = _MAIN_NAMESPACE.get()
    if namespace is not None:
        return namespace
    main = sys.modules.get("__main__")
    return main.__dict__ if main is not None else {"__name__": "__main__"}


def before_code() -> None:
    """Call the pending ``before_code`` of :func:`restoring_into`, if any (once)."""
    pending = _BEFORE_CODE.get()
    if pending:
        pending.pop()()


def before_code_pending() -> bool:
    return bool(_BEFORE_CODE.get())


class _ImportingAfter(pickle.Unpickler):
    """Calls the pending ``before_code`` of :func:`restoring_into` before the load
    imports a module not loaded yet."""

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        if module_name not in sys.modules:
            before_code()
        return super().find_class(module_name, global_name)


def importing_after(stream: bytes | memoryview, buffers: Sequence[Any] = ()) -> pickle.Unpickler:
    """An unpickler of ``stream`` that calls the pending ``before_code`` first if its
    load imports a module."""
    return _ImportingAfter(io.BytesIO(stream), buffers=buffers)


def notebook_namespace() -> dict[str, Any]:
    """:func:`main_namespace`, for a notebook class or method being rebuilt: calls the
    pending ``before_code`` of :func:`restoring_into` first."""
    before_code()
    return main_namespace()


def set_class_digest(digest: Callable[[type], str]) -> None:
    """How a class's definition is told apart (registered once by :mod:`nbcache.keys`)."""
    _digest[:] = [digest]


def _definition(cls: type) -> str | None:
    if not _digest:
        return None
    try:
        return _digest[0](cls)
    except Exception:  # noqa: BLE001 - a class the keys cannot read loads as cloudpickle's
        return None


def reduce_main_class(cls: type, reduced: Any) -> Any:
    """cloudpickle's reduction of a notebook class, made to load as the live class of the
    same definition when there is one; ``reduced`` as it is for any other value."""
    qualname = getattr(cls, "__qualname__", "")
    if (
        getattr(cls, "__module__", None) != "__main__"
        or "." in qualname
        or type(reduced) is not tuple
        or len(reduced) != 6
        or reduced[5] is None
    ):
        return reduced
    digest = _definition(cls)
    if digest is None:
        return reduced
    make, args, state, _, _, setter = reduced
    setter = functools.partial(set_class_state, setter=setter)  # pickled by reference
    return (live_or_rebuilt, (qualname, digest, make, args), state, None, None, setter)


def live_or_rebuilt(qualname: str, digest: str, make: Callable[..., Any], args: Any) -> Any:
    """Unpickling: the live class named ``qualname`` if its definition is ``digest``'s,
    else the class cloudpickle builds."""
    live = notebook_namespace().get(qualname)
    if isinstance(live, type) and live.__module__ == "__main__" and _definition(live) == digest:
        _live.add(live)
        return live
    return make(*args)


def set_class_state(obj: Any, state: Any, setter: Callable[[Any, Any], Any]) -> Any:
    """Set a rebuilt class's state; leave a live one as the notebook defined it."""
    if isinstance(obj, type) and obj in _live:
        return obj
    return setter(obj, state)
