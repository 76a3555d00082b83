"""What a cell reads and binds, its key, and what it showed: the core of ``%%cache``.

Nothing here imports IPython: the magic hands in the transformed source, the
user namespace and the objects to record output from.

- :func:`analyze` finds the names a cell reads before binding them (its
  inputs; names read inside functions it defines count unless the cell binds
  them) and the names it binds.
- :func:`cell_key` hashes the cell's code (comments and layout do not count),
  each input by content (notebook functions by their code fingerprint) and
  nbcache's key format.
- :class:`FileReads` records the files a cell opens for reading (through an
  audit hook, only while a cached cell runs) and later tells whether any of
  them, or a ``--watch`` path, changed.
- :class:`OutputLog` records stdout, stderr and rich display output in order
  while still showing them, and replays them on a hit.
"""

from __future__ import annotations

import ast
import builtins
import os
import stat
import symtable
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import xxhash

from ..errors import KeyPicklingError
from ..keys.calls import KEY_VERSION
from ..keys.code import fingerprint_of, is_code
from ..keys.hashing import describe, digest

__all__ = [
    "NO_RESULT",
    "CellCode",
    "FileReads",
    "OutputLog",
    "analyze",
    "cell_key",
    "changed_names",
    "from_user_code",
    "namespace_snapshot",
]

NO_RESULT: Any = type("NoResult", (), {"__repr__": lambda self: "<no result>"})()
"""What running a cell returns when it does not end with an expression."""

# Names IPython keeps in the namespace that no cell means as an input.
_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"})


def _is_shell_name(name: str) -> bool:
    if name in _SHELL_NAMES:
        return True
    # _, __, ___, _1, _i, _ii, _i3 ... : IPython's output and input history
    stripped = name.lstrip("_")
    return name.startswith("_") and (
        stripped in ("", "i", "ii", "iii")
        or stripped.isdigit()
        or (stripped[:1] == "i" and stripped[1:].isdigit())
    )


# -- what a cell reads and binds ---------------------------------------------------


@dataclass(frozen=True)
class CellCode:
    """A cell's source as analysed: its inputs, its bindings and its code digest."""

    source: str
    reads: tuple[str, ...]
    binds: frozenset[str]
    code_digest: str
    first_line: str


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
    tree = ast.parse(source)
    scan = _Scan()
    for stmt in tree.body:
        scan.visit(stmt)
    binds = scan.bound | scan.deferred_binds
    deferred = [name for name in sorted(scan.deferred) if name not in binds]
    reads = tuple(n for n in (*scan.reads, *deferred) if not _is_shell_name(n))
    dumped = ast.dump(tree, include_attributes=False).encode()
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return CellCode(
        source=source,
        reads=tuple(dict.fromkeys(reads)),
        binds=frozenset(n for n in binds if not _is_shell_name(n)),
        code_digest=xxhash.xxh3_128_hexdigest(dumped),
        first_line=first[:80],
    )


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
) -> CellKey:
    """The key of running ``code`` against ``namespace``.

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
    for name in code.reads:
        if name in skipped:
            continue
        if name in namespace:
            value = namespace[name]
        elif hasattr(builtins, name):
            continue
        else:
            inputs[name] = _UNBOUND
            h.update(f"{name}={_UNBOUND}".encode())
            continue
        try:
            part = digest(value, name=name)
        except KeyPicklingError as exc:
            raise KeyPicklingError(
                f"{exc} The cell runs uncached; to cache it anyway, leave `{name}` out of "
                f"the key with --ignore {name}."
            ) from exc
        inputs[name] = part
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
    return {name: id(value) for name, value in namespace.items() if not _is_shell_name(name)}


def changed_names(
    before: Mapping[str, int], namespace: Mapping[str, Any], binds: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Names (re)bound since ``before`` (plus the cell's own bindings), and names deleted."""
    bound = [
        name
        for name, value in namespace.items()
        if not _is_shell_name(name) and before.get(name) != id(value)
    ]
    bound += [name for name in binds if name in namespace and name not in bound]
    deleted = [name for name in before if name not in namespace]
    return sorted(bound), sorted(deleted)


# -- files the cell reads ----------------------------------------------------------

_SMALL_FILE = 1 << 20
_recording = threading.local()
_hook_installed = False
_hook_lock = threading.Lock()
_SKIP_ROOTS: tuple[str, ...] = ()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open":
        return
    files: set[str] | None = getattr(_recording, "files", None)
    if files is None:
        return
    path, mode, flags = (*args, None, None, None)[:3]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # an open file descriptor
    writing = isinstance(mode, str) and any(c in mode for c in "wax+")
    if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR):
        writing = True
    if not writing:
        files.add(os.fsdecode(path))


def _install_hook() -> None:
    global _hook_installed, _SKIP_ROOTS
    with _hook_lock:
        if _hook_installed:
            return
        import sysconfig

        roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        _SKIP_ROOTS = tuple(os.path.realpath(r) + os.sep for r in roots | {sys.prefix})
        # Audit hooks cannot be removed: this one costs an attribute lookup per open()
        # outside a cached cell, and is installed once, on the first cached cell.
        sys.addaudithook(_audit)
        _hook_installed = True


def _file_state(path: str) -> list[Any]:
    """[size, mtime_ns, content digest] of a file (content only for small files)."""
    try:
        st = os.stat(path)
    except OSError:
        return [None, None, None]
    if stat.S_ISDIR(st.st_mode):
        return _directory_state(path)
    content = None
    if st.st_size <= _SMALL_FILE:
        try:
            with open(path, "rb") as f:
                content = xxhash.xxh3_128_hexdigest(f.read())
        except OSError:
            content = None
    return [st.st_size, st.st_mtime_ns, content]


def _directory_state(path: str) -> list[Any]:
    h = xxhash.xxh3_128()
    total = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            total += st.st_size
            h.update(f"{os.path.relpath(full, path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return ["dir", total, h.hexdigest()]


@dataclass
class FileReads:
    """Files a cell depends on: those it opened for reading, and ``--watch`` paths.

    ``states`` holds each file's state by its real path; ``paths`` maps each
    path as the cell spelled it (``data.csv``) to the real path it meant then,
    so the same relative path meaning another file later is a change too.
    """

    states: dict[str, list[Any]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    @staticmethod
    @contextmanager
    def recording(exclude: Iterable[str] = ()) -> Iterator[dict[str, str]]:
        """Collect the paths this thread opens for reading inside the block, as
        ``{path as given: real path}`` once the block ends."""
        _install_hook()
        files: set[str] = set()
        _recording.files = files
        found: dict[str, str] = {}
        try:
            yield found
        finally:
            _recording.files = None
            skip = _SKIP_ROOTS + tuple(os.path.realpath(p) + os.sep for p in exclude)
            for path in files:
                real = os.path.realpath(path)
                if os.path.isfile(real) and not real.startswith(skip):
                    found[path] = real

    @classmethod
    def of(cls, paths: Iterable[str]) -> FileReads:
        meant = {path: os.path.realpath(path) for path in sorted(paths)}
        return cls({real: _file_state(real) for real in meant.values()}, meant)

    def merged(self, other: FileReads) -> FileReads:
        return FileReads({**self.states, **other.states}, {**self.paths, **other.paths})

    def changed(self) -> list[str]:
        """What differs from when recorded, in words; empty when nothing does."""
        reasons = [
            f"file `{given}` now means {os.path.realpath(given)}"
            for given, real in self.paths.items()
            if os.path.realpath(given) != real
        ]
        reasons += [
            f"file `{path}` changed"
            for path, state in self.states.items()
            if _file_state(path) != state
        ]
        return reasons


# -- output, recorded in order and replayed ------------------------------------------


class _Tee:
    """A text stream that writes through to the real one and records what went by."""

    def __init__(self, stream: TextIO, name: str, log: OutputLog) -> None:
        self._stream = stream
        self._name = name
        self._log = log

    def write(self, text: str) -> int:
        self._log.add(self._name, text)
        return self._stream.write(text)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


@dataclass
class OutputLog:
    """Everything a cell showed, in order: ``("stdout", text)``, ``("display", data, meta)``."""

    events: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, kind: str, *payload: Any) -> None:
        if kind in ("stdout", "stderr") and self.events and self.events[-1][0] == kind:
            self.events[-1] = (kind, self.events[-1][1] + payload[0])
        else:
            self.events.append((kind, *payload))

    @contextmanager
    def recording(self, publisher: Any = None) -> Iterator[OutputLog]:
        """Record stdout, stderr and ``publisher.publish`` calls while still showing them."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, "stdout", self)
        sys.stderr = _Tee(sys.stderr, "stderr", self)
        original = getattr(publisher, "publish", None) if publisher is not None else None
        own = vars(publisher).get("publish") if hasattr(publisher, "__dict__") else None
        if original is not None:
            publisher.publish = self._recording_publish(original)
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = saved
            if original is not None:
                if own is None:
                    del publisher.publish  # back to the class's method
                else:
                    publisher.publish = own

    def _recording_publish(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            if not kwargs.get("update") and not kwargs.get("transient"):
                self.add("display", dict(data), dict(metadata or {}))
            return original(data, metadata, *args, **kwargs)

        return publish

    def replay(self, publish: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
        """Show the recorded output again, in order."""
        for kind, *payload in self.events:
            if kind == "stdout":
                sys.stdout.write(payload[0])
            elif kind == "stderr":
                sys.stderr.write(payload[0])
            elif kind == "display":
                publish(payload[0], payload[1])
        sys.stdout.flush()
        sys.stderr.flush()


def from_user_code(tb: Any, filename: str) -> Any:
    """The traceback from the first frame of the user's cell on (nbcache's own dropped)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename != filename:
        start = start.tb_next
    return start if start is not None else tb
