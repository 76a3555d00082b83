"""The files a cached cell reads and writes, recorded through an audit hook while it runs.

Files read are checked by size, modification time and (for small files) content
on the next look. Files written (opened to write or truncate, not to append:
a log a cell appends to records what ran) and files deleted are kept with the
entry: on a hit a missing or different file is written again, with its
modification time, and a deleted one deleted again. A written file larger than
:data:`KEPT_WRITE` is not kept: when it is missing or different on a look, the
entry is not used and the cell runs again.
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

__all__ = ["KEPT_WRITE", "FileReads", "Written"]

_SMALL_FILE = 1 << 20
KEPT_WRITE = 8 << 20  # files a cell wrote up to this size are stored with its entry
KEPT_WRITES = 64 << 20  # and up to this much in all, in the order it wrote them
_recording = threading.local()
_hook_installed = False
_hook_lock = threading.Lock()
_SKIP_ROOTS: tuple[str, ...] = ()
# Pseudo-files describe the running system, not data: reading /proc/self/status or
# /dev/urandom is not an input (it would differ in every kernel, so never hit).
_PSEUDO_ROOTS = ("/proc/", "/sys/", "/dev/")


_PATHS = (str, bytes, os.PathLike)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS:
        return
    files: set[str] | None = getattr(_recording, "files", None)
    if files is None:
        return
    written: dict[str, None] = _recording.written
    if event == "os.remove":
        if isinstance(args[0], _PATHS) and args[1] in (None, -1):  # -1: no dir_fd
            written[os.path.abspath(os.fsdecode(args[0]))] = None
        return
    if event == "os.rename":
        for path in args[:2]:
            if isinstance(path, _PATHS):
                written[os.path.abspath(os.fsdecode(path))] = None
        return
    path, mode, flags = (*args, None, None, None)[:3]
    if not isinstance(path, _PATHS):
        return  # an open file descriptor
    writing = isinstance(mode, str) and any(c in mode for c in "wax+")
    if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR):
        writing = True
    appending = (isinstance(mode, str) and "a" in mode) or (
        isinstance(flags, int) and flags & os.O_APPEND
    )
    if not writing:
        given = os.fsdecode(path)
        if os.path.abspath(given) not in written:  # not a file the cell made itself
            files.add(given)
    elif not appending:
        written[os.path.abspath(os.fsdecode(path))] = None


_EVENTS = frozenset({"open", "os.remove", "os.rename"})


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


def _content(path: str) -> tuple[list[Any], bytes | None]:
    """[size, mtime_ns, digest] of a written file (digest up to KEPT_WRITE), and its
    bytes when it is kept; [] for a file that is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return [], None
    if not stat.S_ISREG(st.st_mode):
        return [], None
    if st.st_size > KEPT_WRITE:
        return [st.st_size, st.st_mtime_ns, None], None
    try:
        with open(path, "rb") as f:
            data = f.read(KEPT_WRITE + 1)
    except OSError:
        return [st.st_size, st.st_mtime_ns, None], None
    return [len(data), st.st_mtime_ns, xxhash.xxh3_128_hexdigest(data)], data


class StandIn(dict[str, str]):
    """The files read, ``{path as given: real path}``, and those written, once a
    recording ends."""

    written: Written


@dataclass
class Written:
    """Files a cell wrote or deleted: ``states`` maps each path (relative to the folder
    the cell started in when inside it) to [size, mtime_ns, digest, kept], or [] when
    the cell left it deleted; ``contents`` holds the bytes of those kept: each up to
    :data:`KEPT_WRITE`, all up to :data:`KEPT_WRITES`."""

    states: dict[str, list[Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, paths: Iterable[str], start: str, skip: tuple[str, ...]) -> Written:
        out = cls()
        total = 0
        for path in paths:
            real = os.path.realpath(path)
            if real.startswith(skip) or f"{os.sep}__pycache__{os.sep}" in real:
                continue  # bytecode Python writes on import is no output of the cell
            state, data = _content(path)
            if not state and os.path.isdir(path):
                continue  # a folder: its files were recorded as they were written
            inside = os.path.abspath(path).startswith(start.rstrip(os.sep) + os.sep)
            name = os.path.relpath(path, start) if inside else os.path.abspath(path)
            kept = data is not None and total + len(data) <= KEPT_WRITES
            out.states[name] = [*state, kept] if state else state
            if kept and data is not None:
                out.contents[name] = data
                total += len(data)
        return out

    def missing(self) -> list[str]:
        """Files the cell wrote that differ now and are not kept, in words: the entry
        cannot bring them back, so the cell runs again."""
        out = []
        for name, state in self.states.items():
            if not state or (state[3] if len(state) > 3 else state[2] is not None):
                continue
            now, _ = _content(name)
            same = now[:3:2] == state[:3:2] if state[2] else now[:2] == state[:2]
            if not now or not same:
                out.append(
                    f"file `{name}`, which the cell wrote, is missing or changed and too "
                    f"large to keep with the entry ({state[0]} bytes)"
                )
        return out

    def put_back(self, contents: dict[str, bytes]) -> list[str]:
        """Make the files what the cell left them (a hit); those written or deleted."""
        done = []
        for name, state in self.states.items():
            now, _ = _content(name)
            if not state:
                if now:
                    os.remove(name)
                    done.append(name)
                continue
            data = contents.get(name)
            if data is None or (now and now[0] == state[0] and now[2] == state[2]):
                continue
            folder = os.path.dirname(name)
            if folder:
                os.makedirs(folder, exist_ok=True)  # the folder the cell wrote into
            with open(name, "wb") as f:
                f.write(data)
            os.utime(name, ns=(state[1], state[1]))  # later cells that read it still hit
            done.append(name)
        return done


def _skip(exclude: Iterable[str]) -> tuple[str, ...]:
    return _SKIP_ROOTS + tuple(os.path.realpath(p) + os.sep for p in exclude)


def _real(files: set[str], skip: tuple[str, ...]) -> dict[str, str]:
    """``{path as given: real path}`` of the regular files among ``files``."""
    out = {}
    for path in files:
        real = os.path.realpath(path)
        if os.path.isfile(real) and not real.startswith(skip):
            out[path] = real
    return out


@dataclass
class FileReads:
    """Files a cell depends on: those it opened for reading, and ``--watch`` paths.

    ``states`` holds each file's state by its real path; ``paths`` maps each
    path as the cell spelled it (``data.csv``) to the real path it meant then,
    so the same relative path meaning another file later is a change too.
    """

    states: dict[str, list[Any]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    written: Written = field(default_factory=Written)

    @staticmethod
    @contextmanager
    def recording(exclude: Iterable[str] = ()) -> Iterator[dict[str, str]]:
        """Collect the paths this thread opens for reading inside the block, as
        ``{path as given: real path}`` once the block ends."""
        _install_hook()
        files: set[str] = set()
        written: dict[str, None] = {}
        start = os.getcwd()
        _recording.files = files
        _recording.written = written
        found = StandIn()
        try:
            yield found
        finally:
            _recording.files = None
            skip = _skip(exclude)
            found.update(_real(files, skip))
            found.written = Written.of(written, start, skip)

    @classmethod
    def so_far(cls, exclude: Iterable[str] = ()) -> FileReads:
        """The files this thread's recording saw read until now (what a checkpoint of a
        loop was computed from); empty outside a recording."""
        files: set[str] | None = getattr(_recording, "files", None)
        return cls.of(_real(set(files or ()), _skip(exclude)))

    @classmethod
    def of(cls, paths: Iterable[str]) -> FileReads:
        meant = {path: os.path.realpath(path) for path in sorted(paths)}
        written = paths.written if isinstance(paths, StandIn) else Written()
        return cls({real: _file_state(real) for real in meant.values()}, meant, written)

    def merged(self, other: FileReads) -> FileReads:
        written = Written(
            {**self.written.states, **other.written.states},
            {**self.written.contents, **other.written.contents},
        )
        return FileReads({**self.states, **other.states}, {**self.paths, **other.paths}, written)

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
