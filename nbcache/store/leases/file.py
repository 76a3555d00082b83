"""A per-key lease in a folder: owner pid and host, kept alive by a heartbeat.

The lease file is created exclusively (``O_EXCL``), so of two processes that
miss the same key exactly one computes.  Its holder touches the file every
``ttl / 3`` seconds; a lease whose holder died (same host, pid gone) or whose
heartbeat is older than ``ttl`` is taken over, so a crashed kernel never leaves
a key stuck.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import StoreError

__all__ = ["DEFAULT_TTL", "FileLease", "TakeoverLease", "holder_record", "pid_alive"]

DEFAULT_TTL = 30.0
HOST = socket.gethostname()


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
    create and write), so the lease is judged by its age alone."""
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class TakeoverLease:
    """What file and object leases share: create exclusively, or take over a stale holder.

    Subclasses say how to create the lease (``_create``), read its holder
    (``_read``: a dict with pid, host and heartbeat) and break a stale one
    (``_break``), and keep ``ttl`` and ``_token`` (None until the lease is ours).
    """

    ttl: float
    _token: str | None

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
        """Dead holder on this host, or no heartbeat for ``ttl`` seconds."""
        if info.get("host") == HOST and not pid_alive(int(info.get("pid", 0))):
            return True
        return time.time() - float(info.get("heartbeat", 0.0)) > self.ttl

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
                return False
            self._break(info)
        return False


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
            with open(path, "rb") as f:
                raw = f.read()
                heartbeat = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read the lease {path}: {exc.strerror}") from exc
        info = holder_record(raw)
        info["heartbeat"] = heartbeat
        return info

    # -- taking -------------------------------------------------------------

    def _create(self) -> bool:
        token = secrets.token_hex(8)
        body = json.dumps({"pid": os.getpid(), "host": HOST, "token": token}).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._create()
        except OSError as exc:
            raise StoreError(f"cannot create the lease {self.path}: {exc.strerror}") from exc
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        self._token = token
        self._start_heartbeat()
        return True

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
