"""The order a cell's names are shown in: what the user computed first, loop variables last.

A status line has room for four names (``computed a, b, c and 5 more``), so the
order decides which the user sees. Alphabetical order put capitals first, so a
cell that imports ``GradientBoostingClassifier`` and ``GridSearchCV`` and binds
``search`` showed the classes and hid the search. The order, by rank:

1. a name assigned on its own (``search = ...``, ``total += x``, ``n: int = 3``,
   ``(y := f())``): what the cell was written to compute. A cell works toward its
   results, so the name assigned last leads (``rng = ...`` at the top of a
   simulation comes after the ``risk = ...`` it ends with);
2. names unpacked together (``X_train, X_test, y_train, y_test = ...``,
   ``fig, ax = ...``), and inputs the cell changed in place;
3. functions and classes the cell defines, and any name bound to one;
4. imported names and modules;
5. loop, ``with`` and ``except`` targets (``for day in days``): what is left of
   the iteration, rarely what the cell is for.

Below the first rank, names keep the order the cell first binds them in
(``X_train, X_test, y_train, y_test`` as written).
"""

from __future__ import annotations

import ast
import types
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["by_interest"]

_ALONE, _UNPACKED, _CODE, _IMPORTED, _LOOP = range(1, 6)


def by_interest(source: str, names: Iterable[str], namespace: Mapping[str, Any]) -> list[str]:
    """``names`` (what the cell bound or changed) in the order the status line shows them."""
    wanted = list(dict.fromkeys(names))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    ranks = _Ranks()
    ranks.visit(tree)
    keys = {}
    for name in wanted:
        rank, place = ranks.seen.get(name, (_UNPACKED, ranks.binds + 1))
        value = namespace.get(name)
        if rank < _CODE and isinstance(value, (type, types.FunctionType)):
            rank = _CODE  # ``Model = GradientBoostingClassifier``: a class all the same
        if rank < _IMPORTED and isinstance(value, types.ModuleType):
            rank = _IMPORTED
        if rank == _ALONE:
            place = -ranks.last[name]  # the last assigned leads
        keys[name] = (rank, place, name)
    return sorted(wanted, key=keys.__getitem__)


class _Ranks(ast.NodeVisitor):
    """Each name the cell's top level binds: its best rank, and where it was first bound."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}  # name -> (rank, first binding)
        self.last: dict[str, int] = {}  # name -> its last assignment on its own
        self.binds = 0  # bindings counted so far, in the order the code makes them

    def _bind(self, name: str, rank: int) -> None:
        self.binds += 1
        if rank == _ALONE:
            self.last[name] = self.binds
        before = self.seen.get(name)
        if before is None:
            self.seen[name] = (rank, self.binds)
        elif rank < before[0]:
            self.seen[name] = (rank, before[1])

    def _targets(self, target: ast.AST, rank: int) -> None:
        if isinstance(target, ast.Name):
            self._bind(target.id, rank)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._targets(element, max(rank, _UNPACKED))
        elif isinstance(target, ast.Starred):
            self._targets(target.value, max(rank, _UNPACKED))
        else:
            # ``df["c"] = ...``, ``model.coef_ = ...``: the object named first is changed
            root = target
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name):
                self._bind(root.id, _UNPACKED)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._targets(target, _ALONE)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self._targets(node.target, _ALONE)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._targets(node.target, _ALONE)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._bind(node.target.id, _ALONE)

    def _loop(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._targets(node.target, _LOOP)
        for stmt in (*node.body, *node.orelse):
            self.visit(stmt)

    def visit_For(self, node: ast.For) -> None:
        self._loop(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self._loop(node)

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._targets(item.optional_vars, _LOOP)
        for stmt in node.body:
            self.visit(stmt)

    def visit_With(self, node: ast.With) -> None:
        self._with(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self._with(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name, _LOOP)
        for stmt in node.body:
            self.visit(stmt)

    def _imported(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0], _IMPORTED)

    def visit_Import(self, node: ast.Import) -> None:
        self._imported(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._imported(node)

    def _defined(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._bind(node.name, _CODE)  # its body's names are its own, not the cell's

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._defined(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._defined(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._defined(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return  # its parameters are its own

    def _comprehension(self, node: ast.AST) -> None:
        # only a walrus inside binds in the cell; the loop names are the comprehension's
        for child in ast.walk(node):
            if isinstance(child, ast.NamedExpr):
                self._bind(child.target.id, _ALONE)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node)
