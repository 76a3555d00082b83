"""What a cell reads and binds, and its key: the scope analysis behind ``%%cache``.

- :func:`analyze` finds the names a cell reads before binding them (its
  inputs; names read inside functions it defines count unless the cell binds
  them) and the names it binds.
- :func:`cell_key` hashes the cell's code (comments and layout do not count),
  each input by content (notebook functions by their code fingerprint) and
  nbcache's key format.
- :func:`namespace_snapshot` and :func:`changed_names` tell what a run bound,
  rebound or deleted.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import symtable
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import xxhash

from ..errors import KeyPicklingError
from .calls import KEY_VERSION
from .classes import describe
from .code import fingerprint_of, is_code
from .hashing import digest
from .parsed import parsed
from .standin import StandIn

__all__ = [
    "CellCode",
    "CellKey",
    "analyze",
    "cell_key",
    "changed_names",
    "is_history_name",
    "is_shell_name",
    "names_in_string",
    "namespace_snapshot",
]

# Names IPython keeps in the namespace that no cell means as an input.
_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"})


def is_shell_name(name: str) -> bool:
    """Names the shell or Python keeps in the namespace, never a cell's own variable:
    IPython's history (``_``, ``_i3``, ``Out``), and dunders (``__warningregistry__``,
    which ``warnings`` adds to a namespace a warning was raised in)."""
    if name in _SHELL_NAMES:
        return True
    if len(name) > 4 and name.startswith("__") and name.endswith("__"):
        return True
    # _, __, ___, _1, _i, _ii, _i3 ... : IPython's output and input history
    stripped = name.lstrip("_")
    return name.startswith("_") and (
        stripped in ("", "i", "ii", "iii")
        or stripped.isdigit()
        or (stripped[:1] == "i" and stripped[1:].isdigit())
    )


def is_history_name(name: str) -> bool:
    """IPython's input and output history (``In``, ``Out``, ``_``, ``_3``, ``_i``, ``_ih``):
    what it holds depends on the cells run before, not on any value a key can hash."""
    if name in ("get_ipython", "exit", "quit") or not is_shell_name(name):
        return False
    return not (len(name) > 4 and name.startswith("__") and name.endswith("__"))  # a dunder


# -- what a cell reads and binds ---------------------------------------------------


@dataclass(frozen=True)
class CellCode:
    """A cell's source as analysed: its inputs, its bindings and its code digest."""

    source: str
    reads: tuple[str, ...]
    binds: frozenset[str]
    code_digest: str
    first_line: str
    # The cell calls into the shell (a line magic, a ``!`` escape): its effects lie
    # outside the namespace (an extension loaded, a backend chosen), so it always runs.
    uses_shell: bool = False
    # Names read through strings: ``df.query("a > @limit")``, a formula
    # ``"y ~ np.log(x)"``, an ``eval`` string. Keys hash them as inputs too.
    string_reads: tuple[str, ...] = ()
    # The names at the root of the attributes the cell's top level sets or deletes
    # (``textwrap.dedent = f`` sets one of ``textwrap``): on a module or an installed
    # class that is state outside the namespace, which a restore cannot replay.
    attribute_roots: tuple[str, ...] = ()
    # ``name.attr`` as the cell spells it anywhere (``mymod.CONFIG``), and
    # ``(module, name)`` of ``from module import name``: what of a module's state the
    # cell may touch, compared before and after it runs.
    module_attrs: tuple[tuple[str, str], ...] = ()
    from_imports: tuple[tuple[str, str], ...] = ()
    imports: tuple[str, ...] = ()  # the modules the cell imports, by full name
    # IPython's history the cell reads (``_``, ``Out``, ``In``, ``_i``): no key can hold it
    history_reads: tuple[str, ...] = ()


class _Scan(ast.NodeVisitor):
    """Reads before binds, in execution order, at the cell's top level."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: dict[str, None] = {}
        self.deferred: set[str] = set()
        self.deferred_binds: set[str] = set()

    def read(self, name: str) -> None:
        if name not in self.bound:
            self.reads.setdefault(name)

    def bind(self, name: str) -> None:
        self.bound.add(name)

    def visit_Constant(self, node: ast.Constant) -> None:
        """Nothing to read or bind; ``NodeVisitor``'s own looks for visitors of the
        constant's old node type first, a sixth of the scan's time."""

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.read(node.id)
        else:
            self.bind(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self.read(node.target.id)
        self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        for part in (node.annotation, node.value, node.target):
            if part is not None:
                self.visit(part)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in (*node.body, *node.orelse):
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.bind(alias.asname or alias.name.partition(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self.bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self.bind(node.rest)

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self.visit(default)
        self._defer(node)
        if not isinstance(node, ast.Lambda):
            self.bind(node.name)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _definition

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for part in (*node.decorator_list, *node.bases, *node.keywords):
            self.visit(part)
        self._defer(node)
        self.bind(node.name)

    def _defer(self, node: ast.AST) -> None:
        """Names a function or class body looks up globally, through Python's own scoping."""
        module = ast.Module(body=[_as_statement(node)], type_ignores=[])
        table = symtable.symtable(ast.unparse(module), "<cell>", "exec")
        for child in table.get_children():
            reads, binds = _globals_of(child)
            self.deferred |= reads
            self.deferred_binds |= binds

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        first, *rest = node.generators
        self.visit(first.iter)
        local = {
            n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)
        }
        parts: list[ast.AST] = [*first.ifs, *(p for g in rest for p in (g.iter, *g.ifs))]
        parts += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for part in parts:
            for sub in ast.walk(part):
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    self.bind(sub.target.id)
                elif (
                    isinstance(sub, ast.Name)
                    and isinstance(sub.ctx, ast.Load)
                    and sub.id not in local
                ):
                    self.read(sub.id)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def _as_statement(node: ast.AST) -> ast.stmt:
    if isinstance(node, ast.Lambda):
        return ast.Expr(value=node)
    assert isinstance(node, ast.stmt)
    return node


def _globals_of(table: symtable.SymbolTable) -> tuple[set[str], set[str]]:
    reads: set[str] = set()
    binds: set[str] = set()
    for symbol in table.get_symbols():
        if symbol.is_global():
            if symbol.is_referenced():
                reads.add(symbol.get_name())
            if symbol.is_assigned() and symbol.is_declared_global():
                binds.add(symbol.get_name())
    for child in table.get_children():
        child_reads, child_binds = _globals_of(child)
        reads |= child_reads
        binds |= child_binds
    return reads, binds


def analyze(source: str) -> CellCode:
    """Analyse a cell's (already transformed) Python source.

    Raises:
        SyntaxError: the source does not parse; the caller lets Python report it.
    """
    tree = parsed(source)  # auto mode's, when it parsed this text a moment ago
    scan = _Scan()
    for stmt in tree.body:
        scan.visit(stmt)
    binds = scan.bound | scan.deferred_binds
    deferred = [name for name in sorted(scan.deferred) if name not in binds]
    reads = tuple(n for n in (*scan.reads, *deferred) if not is_shell_name(n))
    dumped = ast.dump(tree, include_attributes=False).encode()
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    # A listing shows the first line of code, not the comment above it.
    first = next((line for line in lines if not line.startswith("#")), lines[0] if lines else "")
    evaluates = any(n in ("eval", "exec") for n in (*scan.reads, *scan.deferred))
    strings = []
    attrs: dict[tuple[str, str], None] = {}
    froms: dict[tuple[str, str], None] = {}
    imports: dict[str, None] = {}
    sets_attributes = False  # no attribute set or deleted anywhere: no root to look for
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
        elif isinstance(node, ast.Attribute):
            sets_attributes = sets_attributes or not isinstance(node.ctx, ast.Load)
            if isinstance(node.value, ast.Name):
                attrs[(node.value.id, node.attr)] = None
        elif isinstance(node, ast.Import):
            imports.update(dict.fromkeys(alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imports[node.module] = None
            froms.update(dict.fromkeys((node.module, a.name) for a in node.names))
    string_reads = sorted(
        {n for text in strings for n in names_in_string(text, evaluated=evaluates)}
        - binds
        - set(reads)
    )
    return CellCode(
        source=source,
        reads=tuple(dict.fromkeys(reads)),
        binds=frozenset(n for n in binds if not is_shell_name(n)),
        code_digest=xxhash.xxh3_128_hexdigest(dumped),
        first_line=first[:80],
        uses_shell="get_ipython" in scan.reads or "get_ipython" in scan.deferred,
        string_reads=tuple(n for n in string_reads if not is_shell_name(n)),
        attribute_roots=tuple(sorted(_attribute_roots(tree))) if sets_attributes else (),
        module_attrs=tuple(attrs),
        from_imports=tuple(froms),
        imports=tuple(imports),
        history_reads=tuple(
            n for n in dict.fromkeys((*scan.reads, *sorted(scan.deferred))) if is_history_name(n)
        ),
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_AT_NAME = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")


def names_in_string(text: str, *, evaluated: bool = False) -> set[str]:
    """The names a string reads when a library evaluates it in its caller's namespace:
    pandas' ``query``/``eval`` (``@limit``), a patsy or formulaic formula (every name
    of ``"y ~ np.log(x)"``), or, when the code calls ``eval``/``exec``, every name."""
    text = text[:100_000]
    if evaluated or "~" in text:
        return set(_IDENTIFIER.findall(text)) - _KEYWORDS
    return set(_AT_NAME.findall(text))


_KEYWORDS = frozenset(keyword.kwlist)


def _attribute_roots(tree: ast.Module) -> set[str]:
    """Roots of the attribute targets the cell's own statements assign or delete."""
    roots: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # a body that runs later, if ever
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and isinstance(part.ctx, (ast.Store, ast.Del)):
                    root: ast.expr = part
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    if isinstance(root, ast.Name):
                        roots.add(root.id)
        todo.extend(ast.iter_child_nodes(node))
    return roots


# -- the key -----------------------------------------------------------------------

_UNBOUND = "<unbound>"


@dataclass(frozen=True)
class CellKey:
    """A cell's key, its summary for "why", and the digest of each input taken."""

    key: str
    summary: dict[str, Any]
    input_digests: dict[str, str]


def cell_key(
    code: CellCode,
    namespace: Mapping[str, Any],
    *,
    ignore: Iterable[str] = (),
    identity: str = "cell",
    restored: Mapping[str, tuple[Any, str, str]] | None = None,
) -> CellKey:
    """The key of running ``code`` against ``namespace``.

    ``restored`` maps a name to ``(value, digest now, digest when made)`` for values a
    hit put back whose digest drifted through pickling (a Bunch whose ``__setstate__``
    drops an attribute): while the value is that object and still hashes as it did
    when restored, the key uses the digest it had when it was made, as the run that
    made it did.

    Raises:
        KeyPicklingError: an input cannot be hashed; the message names it and
            says how to leave it out.
    """
    skipped = set(ignore)
    h = xxhash.xxh3_128()
    for part in (KEY_VERSION, "cell", code.code_digest):
        h.update(part.encode())
        h.update(b"\x00")
    inputs: dict[str, str] = {}
    args: dict[str, Any] = {}
    deps: dict[str, list[str]] = {}
    named = _named_by_strings(code, namespace)
    for name in (*code.reads, *named):
        if name in skipped:
            continue
        if name in namespace:
            value = namespace[name]
        elif hasattr(builtins, name) or name in named:
            continue  # a column in a formula, say: no variable of the notebook
        else:
            inputs[name] = _UNBOUND
            h.update(f"{name}={_UNBOUND}".encode())
            continue
        inputs[name], part = _input_digest(name, value, restored)
        h.update(f"{name}={part}".encode())
        if is_code(value):
            deps[name] = ["code", part[:12]]
            deps.update(_nested_dependencies(name, value))
        else:
            args[name] = {**describe(value), "digest": part[:12]}
    summary = {
        "identity": identity,
        "kind": "cell",
        "key_version": KEY_VERSION,
        "code": code.code_digest[:12],
        "deps": deps,
        "args": args,
    }
    return CellKey(h.hexdigest(), summary, inputs)


def _input_digest(
    name: str, value: Any, restored: Mapping[str, tuple[Any, str, str]] | None
) -> tuple[str, str]:
    """An input's digest now (what mutation checks compare with, after the run) and the
    one its key uses: the digest it had when made, for a restored value that drifted."""
    try:
        part = digest(value, name=name)
    except KeyPicklingError as exc:
        # The same class, so the runner can tell a live handle from a value too big.
        raise type(exc)(
            f"{exc} The cell runs uncached; to cache it anyway, leave `{name}` out of "
            f"the key with --ignore {name}."
        ) from exc
    drifted = (restored or {}).get(name)
    if drifted is not None and drifted[0] is value and drifted[1] == part:
        return part, drifted[2]
    return part, part


def _named_by_strings(code: CellCode, namespace: Mapping[str, Any]) -> list[str]:
    """Variables the cell reaches through strings: its own (``code.string_reads``) and
    the ``str`` values it reads (a query built in an earlier cell), as keys hash them."""
    found = dict.fromkeys(code.string_reads)
    for name in code.reads:
        value = namespace.get(name)
        if type(value) is str:
            found.update(dict.fromkeys(sorted(names_in_string(value))))
        elif type(value) is StandIn:
            found.update(dict.fromkeys(value.string_reads))
    return [n for n in found if n not in code.reads and n not in code.binds]


def _nested_dependencies(name: str, value: Any) -> dict[str, list[str]]:
    """What a notebook function the cell calls uses in turn, labelled as calls label it."""
    try:
        found = fingerprint_of(value).dependencies
    except KeyPicklingError:
        return {}
    return {f"{d.via or name}: {d.name}": [d.kind, d.digest[:12]] for d in found}


# -- the namespace before and after ------------------------------------------------


def namespace_snapshot(namespace: Mapping[str, Any]) -> dict[str, int]:
    """Which object each name is bound to now (by identity)."""
    return {name: id(value) for name, value in namespace.items() if not is_shell_name(name)}


def changed_names(
    before: Mapping[str, int], namespace: Mapping[str, Any], binds: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Names (re)bound since ``before`` (plus the cell's own bindings), and names deleted."""
    bound = [
        name
        for name, value in namespace.items()
        if not is_shell_name(name) and before.get(name) != id(value)
    ]
    bound += [name for name in binds if name in namespace and name not in bound]
    deleted = [name for name in before if name not in namespace]
    return sorted(bound), sorted(deleted)
