"""The files a cached cell reads: recorded through an audit hook while it runs, then
checked by size, modification time and (for small files) content on the next look.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import xxhash

__all__ = ["FileReads"]

_SMALL_FILE = 1 << 20
_recording = threading.local()
_hook_installed = False
_hook_lock = threading.Lock()
_SKIP_ROOTS: tuple[str, ...] = ()
# Pseudo-files describe the running system, not data: reading /proc/self/status or
# /dev/urandom is not an input (it would differ in every kernel, so never hit).
_PSEUDO_ROOTS = ("/proc/", "/sys/", "/dev/")


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
        _SKIP_ROOTS += _PSEUDO_ROOTS
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
