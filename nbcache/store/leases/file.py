"""A per-key lease in a folder: owner pid and host, kept alive by a heartbeat.

The lease file is created exclusively (``O_EXCL``), so of two processes that
miss the same key exactly one computes.  Its holder touches the file every
``ttl / 3`` seconds; a lease whose holder died (same host, pid gone) or whose
heartbeat is older than ``ttl`` is taken over, so a crashed kernel never leaves
a key stuck.

A heartbeat is a claim anybody who can write the store can forge, and clocks
drift, so a waiter never trusts its value alone: one more than ``ttl`` in the
future is stale at once, and one that has not moved for ``ttl`` seconds of the
waiter's own monotonic clock is stale whatever it says.  A wait is therefore
bounded by ``ttl`` once the holder stops beating, and a waiter that waits long
says who holds the key and how long it will wait.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import StoreError, warn
from ..base import stat_number

__all__ = [
    "DEFAULT_TTL",
    "FileLease",
    "TakeoverLease",
    "WaitNote",
    "holder_record",
    "pid_alive",
]

DEFAULT_TTL = 30.0
HOST = socket.gethostname()
# A wait shorter than this is ordinary (another kernel finishing the same cell) and
# says nothing; a longer one says who computes the key.
TELL_AFTER = 2.0
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_MAX_RECORD = 4096


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


def holder_record(raw: bytes) -> dict[str, Any]:
    """The holder a lease's bytes name; empty when unreadable (a holder killed between
    create and write, or garbage), so the lease is judged by its age alone."""
    if len(raw) > _MAX_RECORD:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(info: Mapping[str, Any]) -> str:
    """``pid 4242 on host gpu-7`` from a holder record (unsigned: only shown, never trusted)."""
    pid = info.get("pid")
    host = info.get("host")
    who = f"pid {pid}" if isinstance(pid, int) else "a process"
    return f"{who} on host {host[:64]}" if isinstance(host, str) else who


class WaitNote:
    """Says once, after :data:`TELL_AFTER` seconds of waiting, who holds a key and for how
    long this process will wait for it."""

    def __init__(self, what: str, ttl: float) -> None:
        self.what = what
        self.ttl = ttl
        self._since: float | None = None
        self._told = False

    def refused(self, info: Mapping[str, Any] | None) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self._told or now - self._since < TELL_AFTER:
            return
        self._told = True
        holder = describe_holder(info or {})
        warn(
            f"nbcache: waiting for {holder}, which is computing {self.what}: this kernel waits "
            f"while its heartbeat goes on, and takes over if it stops for {self.ttl:.0f} s. "
            "Interrupt to stop waiting.",
            stacklevel=5,
        )

    def reset(self) -> None:
        self._since = None
        self._told = False


class TakeoverLease:
    """What file and object leases share: create exclusively, or take over a stale holder.

    Subclasses say how to create the lease (``_create``), read its holder
    (``_read``: a dict with pid, host and heartbeat) and break a stale one
    (``_break``), and keep ``ttl`` and ``_token`` (None until the lease is ours).
    """

    ttl: float
    path: Any  # where the lease lives, for messages
    _token: str | None
    # (token, heartbeat) last seen, and when by our monotonic clock
    _watched: tuple[tuple[Any, float], float] | None = None
    _note: WaitNote | None = None

    def _create(self) -> bool:
        raise NotImplementedError

    def _read(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def _break(self, stale: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def holder(self) -> Mapping[str, Any] | None:
        """Who holds it now (pid, host, heartbeat), or None if nobody does."""
        return self._read()

    def is_stale(self, info: Mapping[str, Any]) -> bool:
        """Dead holder on this host, or no heartbeat for ``ttl`` seconds, judged by bounded
        rules: a heartbeat more than ``ttl`` ahead of our clock is stale, and so is one
        that has not moved for ``ttl`` seconds of our monotonic clock."""
        pid = info.get("pid")
        if info.get("host") == HOST and (not isinstance(pid, int) or not pid_alive(pid)):
            return True
        heartbeat = stat_number(info, "heartbeat")
        age = time.time() - heartbeat
        if age > self.ttl or -age > self.ttl:
            return True
        seen = (info.get("token") if isinstance(info.get("token"), str) else None, heartbeat)
        now = time.monotonic()
        if self._watched is None or self._watched[0] != seen:
            self._watched = (seen, now)
            return False
        return now - self._watched[1] > self.ttl

    def acquire(self) -> bool:
        """Take the lease without blocking (taking over a dead holder's); True if ours."""
        if self._token is not None:
            return True
        for _ in range(3):
            if self._create():
                return True
            info = self._read()
            if info is None:
                continue  # released meanwhile: try again at once
            if not self.is_stale(info):
                if self._note is None:
                    self._note = WaitNote(f"the key {self._name()[:12]}", self.ttl)
                self._note.refused(info)
                return False
            self._break(info)
        return False

    def _name(self) -> str:
        return str(self.path).rsplit("/", 1)[-1]


def _cannot_create(path: Path, exc: OSError) -> StoreError:
    return StoreError(
        f"cannot create the lease {path}: {exc.strerror or exc}; the folder is read-only or "
        "not a folder (point NBCACHE_DIR at a writable folder)"
    )


class FileLease(TakeoverLease):
    """The lease of one key, as a file ``path``."""

    def __init__(self, path: Path, ttl: float = DEFAULT_TTL) -> None:
        self.path = path
        self.ttl = ttl
        self._token: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- reading ------------------------------------------------------------

    def _read(self, path: Path | None = None) -> dict[str, Any] | None:
        path = path or self.path
        try:
            # Never following a link, never blocking on a planted FIFO.
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(
                f"cannot read the lease {path}: {exc.strerror}; remove it if nbcache did not "
                "make it (a link or special file), or fix the folder's permissions"
            ) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(
                    f"the lease {path} is not a regular file (planted there?): remove it"
                )
            raw = os.read(fd, _MAX_RECORD + 1)
            heartbeat = st.st_mtime
        finally:
            os.close(fd)
        info = holder_record(raw)
        info["heartbeat"] = heartbeat
        return info

    # -- taking -------------------------------------------------------------

    def _create(self) -> bool:
        token = secrets.token_hex(8)
        body = json.dumps({"pid": os.getpid(), "host": HOST, "token": token}).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        except FileNotFoundError:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return self._unwritable(exc)
            return self._create()
        except OSError as exc:
            return self._unwritable(exc)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        self._token = token
        self._start_heartbeat()
        return True

    def _unwritable(self, exc: OSError) -> bool:
        """A folder this process cannot write takes no leases, and needs none: nothing it
        computes can be published there, so there is no one to keep from computing it
        twice.  The write that follows says, once, that caching is in memory only."""
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            self._token = ""  # held, with no file and no heartbeat
            return True
        raise _cannot_create(self.path, exc) from exc

    def _break(self, stale: Mapping[str, Any]) -> None:
        """Remove a stale lease, unless somebody replaced it since we looked."""
        grave = self.path.with_name(f"{self.path.name}.{secrets.token_hex(6)}.dead")
        try:
            os.rename(self.path, grave)  # of two breakers only one succeeds
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot take over the lease {self.path}: {exc.strerror}") from exc
        moved = self._read(grave)
        if moved is not None and moved.get("token") != stale.get("token"):
            # We moved a fresh lease taken between our look and our rename: put it back.
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
        grave.unlink(missing_ok=True)

    # -- keeping and giving up ----------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"nbcache-lease-{self.path.name[:12]}", daemon=True
        )
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self._still_ours():
                return
            try:
                os.utime(self.path)
            except OSError:
                return  # removed or unwritable: whoever waits will judge it by age

    def _still_ours(self) -> bool:
        info = self._read()
        return info is not None and info.get("token") == self._token

    def release(self) -> None:
        if self._token is None:
            return
        if not self._token:
            self._token = None  # the lease of a read-only folder: nothing to remove
            return
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        try:
            if self._still_ours():
                self.path.unlink(missing_ok=True)
        except (OSError, StoreError):
            pass  # a lease we cannot remove goes stale by itself
        finally:
            self._token = None
            self._beat = None

    def __enter__(self) -> FileLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
