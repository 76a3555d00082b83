"""What a cell's code, or a notebook function's, may reach: the names it reads, and whether
it reaches names it does not write down (``eval``, ``globals()``, a function's
``__globals__``, ``__import__("__main__")``), when nothing it names can be trusted to
tell what it reads (:mod:`nbcache.run.lazy` then loads every value and makes every
import). More than it reaches, never less: attribute names count as names.
"""

from __future__ import annotations

import ast
import dis
import types
from collections.abc import Iterable
from typing import Any

from ..keys.scope import is_shell_name, names_in_string

__all__ = ["imports_within", "names_used", "reaches_anything", "source_scan"]

# Attribute names that reach a namespace or a library from any object (see ``_DYNAMIC``):
# a string constant naming one counts too (``attrgetter("__globals__")``), as does one
# naming ``__main__`` (``__import__("__main__")``, whose ``__dict__`` is the namespace).
_WAYS_IN = frozenset({"__globals__", "f_globals", "f_locals", "__self__", "__subclasses__"})
# Calls naming an attribute or a module by their argument at that index: one computed
# there may name any (``getattr(f, "__glob" + "als__")``, ``__import__(name)``).
_NAMING_CALLS = {
    **dict.fromkeys(("getattr", "hasattr", "setattr", "delattr"), 1),
    **dict.fromkeys(("__import__", "import_module"), 0),
}
# Names through which code reaches the namespace without naming what it reads.
_DYNAMIC = frozenset(
    {"eval", "exec", "globals", "vars", "locals", "dir", "__main__", "modules", "user_ns"}
    # the environment an import not made yet would have set
    | {"environ", "getenv"}
    # a function's or frame's namespace (``(lambda: 0).__globals__``), builtins
    # (``print.__self__``), a function's module, and every loaded class or object
    | _WAYS_IN
    | {"getmodule", "get_objects", "get_referrers"}
    # an attribute or module named by a computed string (see ``_NAMING_CALLS``)
    | {"getattr()"}
)
_IMPORT_OPS = frozenset({dis.opmap["IMPORT_NAME"], dis.opmap["IMPORT_FROM"]})


def source_scan(source: str) -> tuple[set[str], set[str]] | None:
    """One walk of the cell's code: the names that say what it may reach (the names it
    reads, its attribute names such as ``sys.modules``, the modules it imports from,
    ``from __main__ import x``), and the names it needs bound besides its reads: those
    it deletes (``del x`` needs ``x``) and those its string constants name (a formula
    ``"y ~ f(x)"``, ``DataFrame.query("a > @limit")``, an ``eval`` string looks names
    up in the caller's namespace). None when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    reached: set[str] = set()
    wanted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                reached.add(node.id)
            elif isinstance(node.ctx, ast.Del):
                wanted.add(node.id)
        elif isinstance(node, ast.Attribute):
            reached.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            reached.add(node.module or "")
        elif isinstance(node, ast.Import):
            reached.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = names_in_string(node.value, evaluated=True)
            wanted.update(named)
            reached.update(named & (_WAYS_IN | {"__main__"}))
        elif isinstance(node, ast.Call) and _computed_name(node):
            reached.add("getattr()")
    return reached, wanted


def _computed_name(call: ast.Call) -> bool:
    """Whether ``call`` is one of ``_NAMING_CALLS`` (``getattr(x, name)``,
    ``__import__(name)``) with the name not a string written in the cell."""
    func = call.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    index = _NAMING_CALLS.get(called) if isinstance(called, str) else None
    if index is None:
        return False
    if len(call.args) <= index:
        return True
    name = call.args[index]
    return not (isinstance(name, ast.Constant) and isinstance(name.value, str))


def reaches_anything(names: Iterable[str]) -> bool:
    # IPython's history names (``_``, ``_3``, ``Out``) hold results restored as stand-ins.
    return any(n in _DYNAMIC or (is_shell_name(n) and not n.startswith("__")) for n in names)


def names_used(value: Any) -> set[str]:
    """Every name the code of a notebook function or class could look up as a global
    (attribute names too: more than needed, never less)."""
    names: set[str] = set()
    seen: set[int] = set()
    todo: list[Any] = [value]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None and wrapped is not obj:
            todo.append(wrapped)
        if isinstance(obj, type):
            todo.extend(vars(obj).values())
        elif isinstance(obj, (staticmethod, classmethod)):
            todo.append(obj.__func__)
        elif isinstance(obj, property):
            todo.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, types.FunctionType):
            todo.append(obj.__code__)
        elif isinstance(obj, types.CodeType):
            names.update(obj.co_names)
            for const in obj.co_consts:
                if isinstance(const, types.CodeType):
                    todo.append(const)
                elif isinstance(const, str):  # a formula or query it passes on
                    names.update(names_in_string(const, evaluated=True))
    return names


def imports_within(code: types.CodeType) -> bool:
    """Whether ``code`` or code nested in it has an import statement."""
    todo = [code]
    while todo:
        one = todo.pop()
        raw = one.co_code
        if any(raw[i] in _IMPORT_OPS for i in range(0, len(raw), 2)):
            return True
        todo.extend(c for c in one.co_consts if isinstance(c, types.CodeType))
    return False
