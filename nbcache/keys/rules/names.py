"""Hashing rules for installed code: by ``module:qualname@version``, never by a walk.

Functions, classes and modules that ``keys/code.py`` does not claim (they
are not local), builtins, bound methods and descriptors.  A library function
that its name does not find (a closure a factory made) adds its defaults and
closure values, where such functions keep what tells them apart.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ..classes import Matcher
from ..hashing import module_version
from ..node import Node, Parts, Rule

__all__ = ["RULES", "global_rule"]


def _importable_as(module: str, qualname: str, obj: Any) -> bool:
    """True if ``module.qualname`` names ``obj`` itself, so the name says what it is."""
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None) if found is not None else None
    return found is obj


def global_rule(n: Node, obj: Any) -> Parts:
    """Installed code: ``module:qualname@version``, never a walk through its code.

    A function its name does not find (a closure a library made, a
    ``functools.wraps`` copy) adds its defaults and closure values, which is
    where such functions keep what distinguishes them.
    """
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "?"
    n.tag(b"global")
    n.text(f"{module}:{qualname}@{module_version(str(module))}")
    if type(obj) is types.FunctionType and not _importable_as(str(module), str(qualname), obj):
        n.tag(b"unnamed")
        yield (obj.__defaults__, ".__defaults__")
        yield (obj.__kwdefaults__, ".__kwdefaults__")
        for index, cell in enumerate(obj.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                n.tag(b"empty")
                continue
            yield contents, f".__closure__[{index}]"


def _module_rule(n: Node, module: types.ModuleType) -> None:
    n.tag(b"module")
    n.text(f"{module.__name__}@{module_version(module.__name__)}")


def _method_rule(n: Node, method: types.MethodType) -> Parts:
    n.tag(b"method")
    yield method.__func__, ".__func__"
    yield method.__self__, ".__self__"


def _builtin_rule(n: Node, fn: Any) -> Parts:
    """``len``, ``math.sqrt``: by name; ``rng.random``, ``[].append``: by their object too."""
    owner = getattr(fn, "__self__", None)
    if owner is None or type(owner) is types.ModuleType:
        yield from global_rule(n, fn)
        return
    n.tag(b"bound-builtin")
    n.text(str(getattr(fn, "__name__", "?")))
    yield owner, ".__self__"


def _descriptor_rule(n: Node, desc: Any) -> Parts:
    """``str.upper``, ``object.__init__``: the class that owns it, and its name."""
    n.tag(b"descriptor")
    n.text(str(getattr(desc, "__name__", "?")))
    owner = getattr(desc, "__objclass__", None)
    if owner is None:
        owner = getattr(desc, "__self__", None)
        n.tag(b"bound")
    yield owner, ".__objclass__"


_DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


RULES: tuple[tuple[Matcher, Rule], ...] = (
    (lambda c: issubclass(c, types.ModuleType), _module_rule),
    (lambda c: c is types.MethodType, _method_rule),
    (lambda c: c is types.FunctionType, global_rule),
    (lambda c: issubclass(c, type), global_rule),
    (lambda c: c is types.BuiltinFunctionType, _builtin_rule),
    (lambda c: issubclass(c, _DESCRIPTORS), _descriptor_rule),
)
