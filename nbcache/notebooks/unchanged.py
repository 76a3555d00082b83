"""A notebook unchanged since its last run: its outputs written again with no kernel started.

After a run that reached every cell, ``nbcache run`` keeps a record of the notebook in
the store, keyed by its code cells as run (parameters included), the folder, the
kernel's command and the environment variables that shape it, and nbcache's key
version. The record holds each cell's entry key and executed outputs, and what must be
checked again: the local modules the kernel imported (by their files' digests) and the
installed distributions on the kernel's ``sys.path`` (by their ``*.dist-info`` names,
which carry versions, read without starting the kernel's Python).

The next run checks what a cell hit checks: every entry still in the store with a
valid signed header, the files each read unchanged, the files each wrote as it left
them; then the modules and the distributions. All hold: the stored outputs are
written and no kernel starts. Any doubt starts the kernel as before.

A cell that always runs allows this only when running it again changes nothing a
restored cell's output depends on (:data:`ALLOWED`); its last run's output is kept.
A cell that begins with such magics and goes on with code restores its code's entry
(see nbcache.run.setupmagics): it is checked as any other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import xxhash

from ..cache.core import Cache
from ..cache.terms import Ask, Hit
from ..entry.format import EntryInfo
from ..keys.calls import KEY_VERSION
from ..run.files import FileReads
from ..run.records import EntryInputs
from ..run.setupmagics import SETUP_MAGICS
from .nbjson import node, valid_output

__all__ = [
    "ALLOWED",
    "Restored",
    "Whole",
    "allowed",
    "distributions",
    "file_digest",
    "open_cache",
    "record_key",
    "since",
]

RECORD_VERSION = "1"
# Line magics that set up the kernel for what follows and leave no value a restored
# cell's output depends on; any other always-run cell (a shell escape, `%cd`, `%run`,
# `%env`, a patch, another cell magic) starts the kernel.
ALLOWED = SETUP_MAGICS
# Line magics whose output is a measurement: with no kernel, the last run's is kept.
MEASURED = ("time", "timeit")
_MAGIC = re.compile(r"%(\w+)\s*(.*)")
# Record files listed as installed distributions: their names carry the version.
_DISTS = (".dist-info", ".egg-info", ".egg-link", ".pth")
_ASK = Ask(remember=False, name="notebook")


def allowed(source: str) -> str | None:
    """The magic of an always-run cell that allows a notebook-level hit, or None: every
    line a comment or an :data:`ALLOWED` magic, or one line timing an expression
    (``%timeit f(x)``: it runs in a function of its own and binds nothing)."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("#")]
    found = [_MAGIC.fullmatch(ln) for ln in lines]
    if not found or any(m is None for m in found):
        return None
    magics = [m.group(1) for m in found if m is not None]
    if all(name in ALLOWED for name in magics):
        return magics[0]
    if len(found) == 1 and found[0] is not None and magics[0] in MEASURED:
        import ast

        try:
            tree = ast.parse(found[0].group(2), mode="eval")
        except SyntaxError:
            return None  # a statement: `%time x = f()` binds x for the cells after it
        if any(isinstance(node, ast.NamedExpr) for node in ast.walk(tree)):
            return None  # `%time (x := f())` binds x too
        return magics[0]
    return None


def file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return xxhash.xxh3_128_hexdigest(f.read())
    except (OSError, ValueError):  # ValueError: a NUL in a recorded name
        return None


def distributions(paths: list[str]) -> str:
    """A digest of the installed distributions on ``paths`` (a kernel's ``sys.path``):
    the names of their metadata folders, which carry each version."""
    h = xxhash.xxh3_128()
    for entry in paths:
        h.update(f"\0{entry}\0".encode())
        try:
            names = sorted(n for n in os.listdir(entry or ".") if n.endswith(_DISTS))
        except (OSError, ValueError):
            h.update(b"-")  # missing, a zip, a file: its appearance is a change too
            continue
        h.update("\n".join(names).encode())
    return h.hexdigest()


def kernel_command(kernel: str | None) -> list[str]:
    """The command that starts the kernel, as its kernelspec gives it, with its
    interpreter found on PATH and stamped (one upgraded in place is another kernel), and
    the environment the kernelspec adds (a ``PYTHONPATH`` there shapes it as much)."""
    env: dict[str, str] = {}
    if not kernel:
        argv = [sys.executable]
    else:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec(kernel)
        except NoSuchKernel:
            return []
        argv = list(spec.argv)
        env = dict(spec.env or {})
    found = shutil.which(argv[0]) if argv else None
    if found:
        st = os.stat(os.path.realpath(found))
        argv = [os.path.realpath(found), f"{st.st_size}:{st.st_mtime_ns}", *argv[1:]]
    return [*argv, *(f"\0{k}={v}" for k, v in sorted(env.items()))] if argv else []


def record_key(nb: Any, folder: Path, env: Mapping[str, str], kernel: str | None) -> str | None:
    """The key of the record of ``nb`` run in ``folder`` with ``env`` on ``kernel``; None
    when the kernel cannot be named (no such kernel: starting it says so)."""
    command = kernel_command(kernel)
    if not command:
        return None
    shaping = {
        k: v
        for k, v in env.items()
        if k.startswith(("NBCACHE_", "PYTHON")) and k != "NBCACHE_AUTO_LOG"
    }
    parts = {
        "record": RECORD_VERSION,
        "keys": KEY_VERSION,
        "folder": os.fspath(folder.resolve()),
        "kernel": command,
        "env": sorted(shaping.items()),
        "cells": [c.source for c in nb.cells if c.cell_type == "code"],
    }
    text = json.dumps(parts, sort_keys=True)
    return xxhash.xxh3_128_hexdigest(b"nbcache notebook record\0" + text.encode())


def open_cache(env: Mapping[str, str], folder: Path) -> Cache | None:
    """The store the kernel uses, as the driver sees it (a relative folder is the
    notebook folder's, where the kernel runs); None when it cannot be opened."""
    from ..cache.default import open_store
    from ..entry.signing import Signer, load_secret
    from ..errors import CacheError
    from ..settings import DEFAULT_DIR

    location = env.get("NBCACHE_DIR", "").strip() or DEFAULT_DIR
    if "://" not in location and not os.path.isabs(location):
        location = os.path.join(folder, location)
    try:
        if "://" not in location and not os.path.isdir(location):
            return None
        return Cache(open_store(location), signer=Signer(load_secret()), memory_bytes=None)
    except (CacheError, OSError):
        return None


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Relative paths an entry recorded are the notebook folder's, where the kernel ran."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _unchanged(info: EntryInfo) -> bool:
    """A cell hit's file checks: what it read is as it was, what it wrote as it left it
    (with no kernel nothing can be put back)."""
    inputs = EntryInputs.of_meta(info.meta)
    if inputs is None or FileReads(dict(inputs.files), dict(inputs.paths)).changed():
        return False
    for name, state in inputs.wrote.items():
        try:
            st = os.stat(name)
        except OSError:
            if state:
                return False
            continue
        if not isinstance(state, list) or [st.st_size, st.st_mtime_ns] != state[:2]:
            return False
    return True


def since(made: float) -> str:
    """What a run written from the record made at ``made`` says of itself."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(made))
    return f"unchanged since {when}: no kernel started"


@dataclass(frozen=True)
class Restored:
    """A notebook written from its record: when that run was, and each code cell's
    (index, why, seconds)."""

    made: float
    cells: list[tuple[int, str, float]]


@dataclass
class Whole:
    """The record of one notebook run so: where it is kept and under which key."""

    key: str
    folder: Path
    env: Mapping[str, str]
    cache: Cache | None  # None until the first run makes the store

    @classmethod
    def of(cls, nb: Any, folder: Path, env: Mapping[str, str], kernel: str | None) -> Whole | None:
        """None for a notebook with no code, or a kernel that cannot be named."""
        if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
            return None
        key = record_key(nb, folder, env, kernel)
        return cls(key, folder, env, open_cache(env, folder)) if key is not None else None

    def restore(self, nb: Any) -> Restored | None:
        """Write the record's outputs into ``nb`` when every check holds; None (``nb``
        untouched) at the first doubt."""
        found = self._check(nb)
        if found is None or self.cache is None:
            return None
        record, hits = found
        for hit in hits:
            self.cache.ledger.count_use(hit.info.key, hit.info)  # a restore is a use
        self.cache.ledger.flush_uses()
        return _written(nb, _code(nb), record)

    def would_restore(self, nb: Any) -> Restored | None:
        """What :meth:`restore` would do with ``nb`` (``nb`` untouched, no use counted):
        the plan's answer before it starts any kernel."""
        found = self._check(nb)
        return _said(_code(nb), found[0]) if found is not None else None

    def _check(self, nb: Any) -> tuple[dict[str, Any], list[Hit[Any]]] | None:
        """The record of ``nb`` and its entries' hits when every check holds, else None."""
        found = self.cache.lookup(self.key, _ASK) if self.cache is not None else None
        record = found.value if found is not None else None
        if self.cache is None or not _readable(record):
            return None
        if [c.source for _, c in _code(nb)] != [kept["source"] for kept in record["cells"]]:
            return None
        hits = _checked(record, self.cache, self.folder)
        return (record, hits) if hits is not None else None

    def keep(self, nb: Any, records: list[dict[str, Any]], seconds: float, name: str) -> bool:
        """After a run that reached every cell: store the record of ``nb`` when every cell
        restores from an entry or is :func:`allowed`, else remove an older one; whether
        one was stored."""
        cache = self.cache = self.cache or open_cache(self.env, self.folder)
        if cache is None:
            return False
        modules, path, by_id = _logged(records)
        cells = [_kept(cell, by_id.get(str(cell.get("id"))), cache) for cell in nb.cells]
        if any(kept is None for kept in cells):
            cache.remove(self.key)
            return False
        info = nb.get("metadata", {}).get("language_info")
        with _inside(self.folder):  # a kernel's '' on sys.path is the folder it ran in
            dists = distributions(path)
        value = {
            "version": RECORD_VERSION,
            "made": time.time(),
            "cells": [kept for kept in cells if kept],
            "modules": modules,
            "path": path,
            "dists": dists,
            "language_info": json.loads(json.dumps(info)) if info else None,
        }
        label = f"notebook {name}".strip()
        meta = {"label": label, "kind": "notebook", "compute_seconds": seconds}
        return cache.overwrite(self.key, value, meta, ask=_ASK) > 0


_CELL_FIELDS: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "created": (int, float),
    "seconds": (int, float),
    "magic": (str,),
    "execution_count": (int, type(None)),
}


def _readable(record: Any) -> TypeGuard[dict[str, Any]]:
    """Whether ``record`` is a notebook record of this version, every field of the type
    restoring reads it as and every output one nbformat accepts: a record of another
    shape (a bug, a teammate's tool sharing the secret) is no record, never a traceback
    nor an invalid notebook written."""
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return False
    cells, modules, path = record.get("cells"), record.get("modules", {}), record.get("path", [])
    info = record.get("language_info")
    if (
        not _number(record.get("made", 0.0))
        or not isinstance(record.get("dists"), str)
        or not (info is None or (isinstance(info, dict) and isinstance(info.get("name"), str)))
        or not isinstance(modules, dict)
        or not all(isinstance(m, str) for m in modules)
        or not all(isinstance(d, (str, type(None))) for d in modules.values())
        or not isinstance(path, list)
        or not all(isinstance(p, str) for p in path)
        or not isinstance(cells, list)
    ):
        return False
    for kept in cells:
        if not isinstance(kept, dict) or not isinstance(kept.get("source"), str):
            return False
        for name, types in _CELL_FIELDS.items():
            value = kept.get(name)
            if name in kept and (not isinstance(value, types) or isinstance(value, bool)):
                return False
        outputs = kept.get("outputs", [])
        if not isinstance(outputs, list) or not all(valid_output(o) for o in outputs):
            return False
    return True


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked(record: dict[str, Any], cache: Cache, folder: Path) -> list[Hit[Any]] | None:
    """The hits of the record's entries when what a cell hit checks holds, and the local
    modules and installed distributions are as they were; None at the first doubt."""
    hits = []
    with _inside(folder):
        for kept in record["cells"]:
            if kept.get("key"):
                hit = cache.peek(str(kept["key"]), Ask(validate=_unchanged))
                if hit is None:
                    return None  # evicted, damaged, or a file it read changed
                if hit.info.created != kept.get("created"):
                    return None  # made again since (its files changed, say): other outputs
                hits.append(hit)
        modules = dict(record.get("modules", {}))
        if any(file_digest(path) != digest for path, digest in modules.items()):
            return None  # a local module was edited
        if distributions(list(record.get("path", []))) != record.get("dists"):
            return None  # a distribution was installed, removed, upgraded
    return hits


def _code(nb: Any) -> list[tuple[int, Any]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _said(code: list[tuple[int, Any]], record: dict[str, Any]) -> Restored:
    """What a run written from ``record`` says of each non-empty code cell."""
    made = float(record.get("made", 0.0))
    out = []
    for (index, cell), kept in zip(code, record["cells"], strict=True):
        if not cell.source.strip():
            continue
        why = since(made)
        if kept.get("magic") in MEASURED:
            why += f"; the output `%{kept['magic']}` gave then is kept"
        out.append((index, why, float(kept.get("seconds", 0.0))))
    return Restored(made, out)


def _written(nb: Any, code: list[tuple[int, Any]], record: dict[str, Any]) -> Restored:
    for (_, cell), kept in zip(code, record["cells"], strict=True):
        if cell.source.strip():
            cell.outputs = node(kept.get("outputs", []))
            cell.execution_count = kept.get("execution_count")
    if record.get("language_info"):
        nb.metadata["language_info"] = node(record["language_info"])
    return _said(code, record)


def _logged(
    records: list[dict[str, Any]],
) -> tuple[dict[str, str], list[str], dict[str, dict[str, Any]]]:
    """From the kernel's cell log: the local modules' digests, its ``sys.path``, and each
    cell's last record by id."""
    by_id: dict[str, dict[str, Any]] = {}
    modules: dict[str, str] = {}
    path: list[str] = []
    touched: dict[str, Any] = {}
    for record in records:
        environment = record.get("environment")
        if isinstance(environment, dict):
            modules.update(environment.get("modules", {}))
            path += [p for p in environment.get("path", []) if p not in path]
        elif record.get("measured"):
            touched[str(record["measured"])] = record.get("touched")
        elif record.get("cell_id") and "warning" not in record:
            by_id[str(record["cell_id"])] = record
    for cell_id, files in touched.items():
        if cell_id in by_id:
            by_id[cell_id] = {**by_id[cell_id], "touched": files}
    return modules, path, by_id


def _kept(cell: Any, logged: dict[str, Any] | None, cache: Cache) -> dict[str, Any] | None:
    """What the record keeps of a code cell ({} for any other cell); None when the cell
    allows no notebook-level hit."""
    if cell.cell_type != "code":
        return {}
    kept = {
        "source": cell.source,
        "outputs": json.loads(json.dumps(cell.get("outputs", []))),
        "execution_count": cell.get("execution_count"),
    }
    if not cell.source.strip():
        return kept
    if logged is None or cell.source.lstrip().startswith("%%"):
        return None  # left to IPython: another cell magic, an await; or it failed
    outcome, entry = logged.get("outcome"), str(logged.get("key") or "")
    found = cache.peek(entry) if outcome in ("restored", "ran") and entry else None
    if found is not None and not logged.get("always"):
        took = float(logged.get("seconds") or 0.0)
        return {**kept, "key": entry, "created": found.info.created, "seconds": took}
    if outcome == "uncached" and (magic := allowed(cell.source)) is not None:
        if magic in MEASURED and logged.get("touched") != []:
            return None  # `%time load()` shows what it read; a kernel runs it (or said nothing)
        return {**kept, "magic": magic}
    return None
