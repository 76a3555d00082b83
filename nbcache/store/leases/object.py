"""A per-key lease as a small object on a shared file system (S3 and other fsspec stores).

On S3 (and servers that speak its conditional requests) every step is atomic on
the server: the lease is created with ``If-None-Match: *`` (of two creators
exactly one wins), the heartbeat rewrites it with ``If-Match`` on its own ETag
(a holder that was taken over notices), and a stale lease is deleted with
``If-Match`` on the ETag that was judged stale (so a fresh one is never
removed by a late breaker).

Other fsspec file systems get create-only writes where fsspec offers them
(``mode="create"``) and a read-back of the token; taking over a stale lease
there is a read, compare and delete, which two breakers racing within
milliseconds can both win.  The cost of that race is one computation done
twice, never a wrong value: entries are immutable and the first one stays.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...errors import StoreError
from ..base import stat_number
from .file import DEFAULT_TTL, HOST, TakeoverLease, holder_record

__all__ = ["ObjectLease", "read_body", "remote_errors", "speaks_s3"]


@functools.cache
def remote_errors() -> tuple[type[BaseException], ...]:
    """What a remote file system raises for a network, permission or server problem."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from botocore.exceptions import BotoCoreError

        errors.append(BotoCoreError)
    except ImportError:
        pass
    try:
        from aiohttp import ClientError

        errors.append(ClientError)
    except ImportError:
        pass
    return tuple(errors)


def speaks_s3(fs: Any) -> bool:
    """Whether ``fs`` is s3fs (or alike): raw S3 calls, hence conditional requests."""
    return hasattr(fs, "_call_s3") and hasattr(fs, "split_path")


def _precondition_failed(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EINVAL


class ObjectLease(TakeoverLease):
    """The lease of one key, as the object ``path`` on the fsspec file system ``fs``."""

    def __init__(self, fs: Any, path: str, ttl: float = DEFAULT_TTL) -> None:
        self.fs = fs
        self.path = path
        self.ttl = ttl
        self._s3 = speaks_s3(fs)
        self._token: str | None = None
        self._etag: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._errors = remote_errors()
        self._lost: tuple[type[BaseException], ...] = (*self._errors, StoreError)

    def __repr__(self) -> str:
        return f"ObjectLease({self.path!r})"

    # -- the object ----------------------------------------------------------

    def _body(self, token: str) -> bytes:
        record = {"pid": os.getpid(), "host": HOST, "token": token, "beat": time.time()}
        return json.dumps(record).encode()

    def _s3_call(self, method: str, **kwargs: Any) -> Any:
        bucket, key, _ = self.fs.split_path(self.path)
        return self.fs.call_s3(method, Bucket=bucket, Key=key, **kwargs)

    def _read(self) -> dict[str, Any] | None:
        try:
            if self._s3:
                reply = self._s3_call("get_object")
                raw, etag = _read_body(self.fs, reply["Body"]), reply.get("ETag")
                modified = reply.get("LastModified")
            else:
                raw, etag, modified = self.fs.cat_file(self.path), None, None
        except FileNotFoundError:
            return None
        except self._errors as exc:
            raise StoreError(f"cannot read the lease {self.path}: {exc}") from exc
        info = holder_record(raw)
        info["etag"] = etag
        beat = stat_number(info, "beat")
        if isinstance(modified, datetime):
            beat = max(beat, modified.timestamp())
        info["heartbeat"] = beat
        return info

    # -- taking --------------------------------------------------------------

    def _create(self) -> bool:
        token = secrets.token_hex(8)
        body = self._body(token)
        try:
            if self._s3:
                self._etag = self._s3_call("put_object", Body=body, IfNoneMatch="*")["ETag"]
            else:
                self.fs.pipe_file(self.path, body, mode="create")
        except FileExistsError:
            return False
        except self._errors as exc:
            if _precondition_failed(exc):
                return False
            raise StoreError(f"cannot create the lease {self.path}: {exc}") from exc
        if not self._s3:
            mine = self._read()  # a file system that ignored "create" shows the last writer
            if mine is None or mine.get("token") != token:
                return False
        self._token = token
        self._start_heartbeat()
        return True

    def _break(self, stale: Mapping[str, Any]) -> None:
        """Remove a stale lease, unless somebody replaced it since we looked."""
        try:
            self._delete_if(stale.get("token"), stale.get("etag"))
        except self._lost as exc:
            raise StoreError(f"cannot take over the lease {self.path}: {exc}") from exc

    def _delete_if(self, token: Any, etag: Any) -> None:
        """Delete the lease if it is still the one with ``token`` (and ``etag``).

        On S3 the delete is conditional on the ETag.  A server that refuses the
        condition itself (not its outcome) gets a read, compare and delete instead.
        """
        if self._s3 and etag:
            try:
                self._s3_call("delete_object", IfMatch=etag)
                return
            except FileNotFoundError:
                return
            except self._errors as exc:
                if _precondition_failed(exc):
                    return  # replaced meanwhile: the new holder is alive
        try:
            now = self._read()
            if now is not None and now.get("token") == token:
                self.fs.rm_file(self.path)
        except FileNotFoundError:
            return

    # -- keeping and giving up -----------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"nbcache-lease-{self.path[-12:]}", daemon=True
        )
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                if self._token is None or not self._renew(self._token):
                    return

    def _renew(self, token: str) -> bool:
        """Rewrite the lease with a new beat; False once it is not ours any more."""
        body = self._body(token)
        try:
            if self._s3:
                self._etag = self._s3_call("put_object", Body=body, IfMatch=self._etag)["ETag"]
                return True
            now = self._read()
            if now is None or now.get("token") != token:
                return False
            self.fs.pipe_file(self.path, body)
        except self._lost:
            return False  # lost or unreachable: whoever waits judges it by age
        return True

    def release(self) -> None:
        if self._token is None:
            return
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        with self._lock:
            token, self._token, self._beat = self._token, None, None
            try:
                self._delete_if(token, self._etag)
            except self._lost:
                pass  # a lease we cannot remove goes stale by itself

    def __enter__(self) -> ObjectLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


async def read_body(body: Any) -> bytes:
    """All the bytes of an aiobotocore streaming body, which is then closed."""
    try:
        return bytes(await body.read())
    finally:
        body.close()


def _read_body(fs: Any, body: Any) -> bytes:
    """The bytes of an aiobotocore streaming body, read on the file system's event loop."""
    from fsspec.asyn import sync

    return bytes(sync(fs.loop, read_body, body))
