"""Where code lives: local modules by their source and every local module they reach.

A module is local when its file is outside site-packages and the standard
library (a notebook's own package, an editable install); everything else is
installed and counts by name and version.  A local module's fingerprint
covers its own source and, cycle-safe, the source of every local module it
reaches: what it imports (at the top or inside a function, relative imports
resolved), the submodules its package ``__init__`` imports, and submodules
bound on it (``import pkg.sub``).  Sources are read from the files, so the
fingerprint is the same across restarts; files are found without importing
anything (a module a function imports lazily counts before its first call).
"""

from __future__ import annotations

import ast
import importlib.machinery
import os
import stat
import sys
import sysconfig
import types
from collections.abc import Iterator

import xxhash

from .hashing import module_version

__all__ = [
    "absolute_name",
    "expand_dotted",
    "is_installed_module",
    "is_local_module",
    "locate_module",
    "module_fingerprint",
    "module_fingerprint_by_name",
]

_ROOTS = tuple(
    os.path.abspath(p)
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
)
_INSTALLED_ROOTS = tuple(os.path.realpath(p) for p in _ROOTS)
# Each root as written: a path under one is installed unless a link below the root
# leads elsewhere (the root itself resolves to its real one above).
_WRITTEN_ROOTS = tuple(root.rstrip(os.sep) + os.sep for root in _ROOTS)
_LOCAL: dict[str, bool] = {}


def _is_installed_path(path: str) -> bool:
    if _under_installed_root(path):
        return True
    real = os.path.realpath(path)
    return real.startswith(_INSTALLED_ROOTS) or "site-packages" in real


def _under_installed_root(path: str) -> bool:
    """Whether ``path`` lies in an installed root as written, through no link below it.

    What ``realpath`` would say, with a ``lstat`` for each part below the root instead
    of one for every part of the path: a fresh kernel's first hit asks for each module
    its function uses. ``..``, ``.`` or a link below the root: not known here (False).
    """
    for written in _WRITTEN_ROOTS:
        if not path.startswith(written):
            continue
        parts = path[len(written) :].split(os.sep)
        if not all(parts) or ".." in parts or "." in parts:
            return False
        current = written.rstrip(os.sep)
        for part in parts:
            current += os.sep + part  # os.path.join's own steps: parts are never empty
            try:
                if stat.S_ISLNK(os.lstat(current).st_mode):
                    return False
            except OSError:
                return False
        return True
    return False


def is_local_module(name: str) -> bool:
    """True for ``__main__`` (a notebook), modules whose file is not an installed one,
    and names no loaded module has (code made by ``exec`` in a namespace of its own):
    those count by their code, since a name would not tell two versions apart."""
    cached = _LOCAL.get(name)
    if cached is not None:
        return cached
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if name == "__main__" or name.startswith("__ipython"):
        local = True
    elif module is None:
        return True  # not cached: it may be imported later, from anywhere
    elif not path:
        local = False
    else:
        local = not _is_installed_path(path)
    _LOCAL[name] = local
    return local


def is_installed_module(name: str) -> bool:
    """Whether the top-level package of module ``name`` is built in or an installed one
    (the standard library, site-packages), found without importing it; False for one
    beside the notebook and for one not found."""
    top = name.partition(".")[0]
    if top in sys.builtin_module_names:
        return True
    path = locate_module(top)
    return path is not None and _is_installed_path(path)


_SOURCE_DIGESTS: dict[str, tuple[tuple[int, int], str, tuple[str, ...]]] = {}


def module_fingerprint(module: types.ModuleType) -> str:
    """``name@version`` for installed modules; ``name#digest`` for local ones.

    A local module's digest covers its own source and the source of every
    local module it reaches (see the module docstring), so an edit two
    imports down changes it.
    """
    name = module.__name__
    path = getattr(module, "__file__", None)
    if not path or not is_local_module(name):
        return f"{name}@{module_version(name)}"
    cached = _CLOSURES.get(name)
    if cached is not None and cached[0] == len(sys.modules) and _stamps_hold(cached[1]):
        return cached[2]  # every call re-checks this: stats, not a walk of the imports
    found = _local_closure(name, path, module)
    if found is None:
        return f"{name}@missing"
    parts, paths = found
    result = _closure_fingerprint(name, parts)
    stamps = tuple((p, _stamp(p)) for p in paths)
    _CLOSURES[name] = (len(sys.modules), stamps, result)
    return result


# name -> (len(sys.modules), (path, stat stamp) of every module in the closure, fingerprint):
# a new import anywhere or an edited file makes the closure be walked again.
_CLOSURES: dict[str, tuple[int, tuple[tuple[str, tuple[int, int] | None], ...], str]] = {}


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _stamps_hold(stamps: tuple[tuple[str, tuple[int, int] | None], ...]) -> bool:
    return all(_stamp(path) == stamp for path, stamp in stamps)


def _closure_fingerprint(name: str, parts: list[str]) -> str:
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(part.encode())
        h.update(b"\n")
    return f"{name}#{h.hexdigest()}"


def _source_facts(path: str) -> tuple[str, tuple[str, ...]] | None:
    """(digest of the file, the absolute names of what it imports), cached by stat."""
    stamp = _stamp(path)
    if stamp is None:
        return None
    cached = _SOURCE_DIGESTS.get(path)
    if cached is None or cached[0] != stamp:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        imports = tuple(sorted(_imports_in(data, path)))
        cached = (stamp, xxhash.xxh3_128_hexdigest(data), imports)
        _SOURCE_DIGESTS[path] = cached
    return cached[1], cached[2]


def _package_of(path: str, name: str) -> str:
    is_package = os.path.basename(path).startswith("__init__.")
    return name if is_package else name.rpartition(".")[0]


def _imports_in(data: bytes, path: str) -> set[str]:
    """Module names a source imports anywhere (also inside functions), relative ones as
    ``.name`` marks resolved later; ``from m import x`` adds ``m.x`` in case x is a module."""
    try:
        tree = ast.parse(data, path)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            for alias in node.names:
                if alias.name != "*":
                    found.add(f"{base}.{alias.name}" if base.strip(".") else base + alias.name)
    return found


def absolute_name(name: str, package: str) -> str | None:
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    rest = name[level:]
    return f"{base}.{rest}".strip(".") if rest else base or None


def expand_dotted(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing one runs each package on the way."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])


def locate_module(name: str) -> str | None:
    """The file of module ``name`` (loaded or not), found without importing anything."""
    module = sys.modules.get(name)
    if module is not None:
        path = getattr(module, "__file__", None)
        return path if isinstance(path, str) else None
    parent, _, last = name.rpartition(".")
    search: list[str] | None = None
    if parent:
        parent_module = sys.modules.get(parent)
        if parent_module is not None:
            search = list(getattr(parent_module, "__path__", None) or [])
        else:
            parent_path = locate_module(parent)
            if parent_path is None or not os.path.basename(parent_path).startswith("__init__."):
                return None
            search = [os.path.dirname(parent_path)]
        if not search:
            return None
    try:
        spec = importlib.machinery.PathFinder.find_spec(last, search)
    except (ImportError, ValueError, AttributeError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    return origin if isinstance(origin, str) and os.path.isfile(origin) else None


def _local_closure(
    name: str, path: str, module: types.ModuleType | None
) -> tuple[list[str], list[str]] | None:
    """``name=digest`` of the module and every local module it reaches, sorted; their files."""
    facts = _source_facts(path)
    if facts is None:
        return None
    seen = {name: facts[0]}
    paths = [path]
    queue: list[tuple[str, str, tuple[str, ...], types.ModuleType | None]] = [
        (name, path, facts[1], module)
    ]
    while queue:
        current, current_path, imports, loaded = queue.pop()
        package = _package_of(current_path, current)
        candidates: set[str] = set()
        for raw in imports:
            absolute = absolute_name(raw, package)
            if absolute:
                candidates.update(expand_dotted(absolute))
        if loaded is not None:
            # ``import pkg.sub`` binds sub on pkg: what code reaches as pkg.sub.f.
            for value in list(vars(loaded).values()):
                if isinstance(value, types.ModuleType) and value.__name__ != current:
                    candidates.add(value.__name__)
        for other in sorted(candidates - seen.keys()):
            other_path = locate_module(other)
            if other_path is None or _is_installed_path(other_path):
                continue
            other_facts = _source_facts(other_path)
            if other_facts is None:
                continue
            seen[other] = other_facts[0]
            paths.append(other_path)
            queue.append((other, other_path, other_facts[1], sys.modules.get(other)))
    return sorted(f"{k}={v}" for k, v in seen.items()), paths


def module_fingerprint_by_name(name: str) -> str | None:
    """The fingerprint of a local module by name, imported or not; None if not local."""
    module = sys.modules.get(name)
    if module is not None:
        return module_fingerprint(module) if is_local_module(name) else None
    path = locate_module(name)
    if path is None or _is_installed_path(path):
        return None
    found = _local_closure(name, path, None)
    if found is None:
        return None
    return _closure_fingerprint(name, found[0])
