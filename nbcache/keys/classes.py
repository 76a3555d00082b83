"""What a value's class says, asked of the class alone: the matchers rules register
under, a class's name, whether it defines a name, a value's short summary.

Nothing here imports a library: a matcher looks a class up only where its module
is imported already, since a value of a library's type cannot exist before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .standin import StandIn

__all__ = [
    "Matcher",
    "describe",
    "has_attr",
    "instance_dict",
    "loaded_class",
    "subclass_of",
    "type_name",
]

Matcher = Callable[[type], bool]


def describe(value: Any) -> dict[str, Any]:
    """A short summary for "why did it miss": type, shape or length where known.

    Never raises: a value with a hostile ``__getattr__`` is described by its type.
    """
    cls = type(value)
    if cls is StandIn:
        return dict(value.described)
    summary: dict[str, Any] = {"type": type_name(cls)}
    try:
        shape = getattr(value, "shape", None) if has_attr(cls, "shape") else None
        if type(shape) is tuple and all(type(n) is int for n in shape):
            summary["shape"] = list(shape)
        elif cls in (list, tuple, dict, set, frozenset, str, bytes):
            summary["len"] = len(value)
        if cls in (int, float, bool) or (cls is str and len(value) <= 40):
            summary["repr"] = repr(value)
    except Exception:  # noqa: BLE001 - a summary is best effort; the type is always known
        return {"type": summary["type"]}
    return summary


def has_attr(cls: type, name: str) -> bool:
    """True if ``cls`` or a base defines ``name``: asks the classes, never the instance."""
    return any(name in vars(klass) for klass in cls.__mro__)


def type_name(cls: type) -> str:
    """``module.Qualname`` (bare for builtins), read from the class itself."""
    module = getattr(cls, "__module__", None) or "?"
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    return str(qualname) if module == "builtins" else f"{module}.{qualname}"


def loaded_class(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is imported already and it is a class, else None."""
    mod = sys.modules.get(module)
    cls: Any = mod
    for part in name.split("."):
        cls = getattr(cls, part, None)
    return cls if isinstance(cls, type) else None


def subclass_of(module: str, *names: str) -> Matcher:
    """A matcher for subclasses of ``module.name`` that imports nothing."""

    def matches(cls: type) -> bool:
        for name in names:
            base = loaded_class(module, name)
            if base is not None and issubclass(cls, base):
                return True
        return False

    return matches


def instance_dict(value: Any) -> dict[str, Any] | None:
    """``value.__dict__`` without running a ``__getattr__`` that answers every name."""
    try:
        state = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return None
    return state if type(state) is dict else None
