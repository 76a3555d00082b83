"""Leases in Redis (``NBCACHE_LOCK_URL=redis://...``), for any store.

Object stores answer a lease in tens of milliseconds and some have no
conditional writes; a Redis server answers in well under one and is atomic.
Each lease is a ``redis-py`` lock that expires ``ttl`` seconds after its last
heartbeat, so a crashed kernel never leaves a key stuck, plus a small record
of who holds it.  A holder on this host whose process is gone is taken over
at once with a compare-and-delete, as the file lease does.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, BinaryIO

from ...errors import StoreError
from ..base import EntryStat, Lease, Store, check_key
from .file import DEFAULT_TTL, HOST, WaitNote, holder_record, pid_alive

__all__ = ["LeasedStore", "RedisLease", "redis_client"]

_DELETE_IF_TOKEN = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('del', KEYS[2])
    return redis.call('del', KEYS[1])
end
return 0
"""


def redis_client(url: str) -> Any:
    """A Redis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    Raises:
        StoreError: redis-py is missing or the URL is malformed.
    """
    try:
        import redis
    except ImportError as exc:
        raise StoreError(
            "NBCACHE_LOCK_URL names a Redis server but redis-py is not installed: "
            '`pip install "nbcache[redis]"`, or unset NBCACHE_LOCK_URL.'
        ) from exc
    try:
        return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    except ValueError as exc:
        raise StoreError(
            f"NBCACHE_LOCK_URL={url!r} is not a Redis URL ({exc}); use redis://host:port/0 "
            "or unix:///path/to/redis.sock"
        ) from exc


def _redis_error() -> type[BaseException]:
    import redis

    return redis.RedisError


class RedisLease:
    """The lease of one key, as a Redis lock named after the store and the key."""

    def __init__(self, client: Any, name: str, ttl: float = DEFAULT_TTL) -> None:
        self.client = client
        self.name = name
        self.ttl = ttl
        self._info = f"{name}:holder"
        self._lock = client.lock(name, timeout=ttl, blocking=False, thread_local=False)
        self._held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._error = _redis_error()
        self._note = WaitNote(f"the key {name.rsplit(':', 1)[-1][:12]}", ttl)

    def __repr__(self) -> str:
        return f"RedisLease({self.name!r})"

    def _fail(self, exc: BaseException, action: str) -> StoreError:
        return StoreError(
            f"cannot {action} the lease {self.name} in Redis: {exc}; check NBCACHE_LOCK_URL "
            "and that the server is up"
        )

    def holder(self) -> Mapping[str, Any] | None:
        try:
            raw = self.client.get(self._info)
        except self._error as exc:
            raise self._fail(exc, "read") from exc
        if raw is None:
            return None
        return holder_record(raw)

    def acquire(self) -> bool:
        if self._held:
            return True
        try:
            if not self._lock.acquire(blocking=False):
                info = self.holder()
                if not info or not self._dead(info):
                    self._note.refused(info)
                    return False
                self.client.eval(_DELETE_IF_TOKEN, 2, self.name, self._info, info["token"])
                if not self._lock.acquire(blocking=False):
                    return False
            token = self._lock.local.token
            token = token.decode() if isinstance(token, bytes) else str(token)
            record = {"pid": os.getpid(), "host": HOST, "token": token}
            self.client.set(self._info, json.dumps(record), px=int(self.ttl * 1000))
        except self._error as exc:
            raise self._fail(exc, "take") from exc
        self._held = True
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"nbcache-lease-{self.name[-12:]}", daemon=True
        )
        self._beat.start()
        return True

    @staticmethod
    def _dead(info: Mapping[str, Any]) -> bool:
        pid = info.get("pid")
        return (
            info.get("host") == HOST
            and isinstance(info.get("token"), str)
            and not (isinstance(pid, int) and pid_alive(pid))
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
                self.client.pexpire(self._info, int(self.ttl * 1000))
            except Exception:  # noqa: BLE001 - lost or unreachable: waiters judge it by age
                return

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        self._beat = None
        token = self._lock.local.token
        try:
            if token is not None:
                self.client.eval(_DELETE_IF_TOKEN, 2, self.name, self._info, token)
        except self._error:
            pass  # an unreachable server lets the lock expire by itself
        self._lock.local.token = None

    def __enter__(self) -> RedisLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LeasedStore(Store):
    """``store`` with its leases taken from Redis instead of from the store itself."""

    def __init__(self, store: Store, client: Any, ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.client = client
        self.ttl = ttl
        self.location = store.location
        self.list_interval = store.list_interval
        self._prefix = "nbcache:" + hashlib.sha256(store.location.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"LeasedStore({self.store!r}, leases in Redis)"

    def lease(self, key: str) -> Lease:
        return RedisLease(self.client, f"{self._prefix}:{check_key(key)}", self.ttl)

    def open_entry(self, key: str) -> BinaryIO:
        return self.store.open_entry(key)

    def write_entry(self, key: str, *, replace: bool = False) -> AbstractContextManager[BinaryIO]:
        return self.store.write_entry(key, replace=replace)

    def has_entry(self, key: str) -> bool:
        return self.store.has_entry(key)

    def remove_entry(self, key: str) -> None:
        self.store.remove_entry(key)

    def entries(self) -> Iterator[EntryStat]:
        return self.store.entries()

    def read_stats(self, key: str) -> dict[str, Any] | None:
        return self.store.read_stats(key)

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        self.store.write_stats(key, stats)

    def check(self) -> None:
        self.store.check()
        try:
            self.client.ping()
        except _redis_error() as exc:
            raise StoreError(
                f"cannot reach the Redis server of NBCACHE_LOCK_URL: {exc}; check the URL and "
                "that the server is up, or unset NBCACHE_LOCK_URL"
            ) from exc

    def probe(self, key: str) -> bool:
        return self.store.probe(key)

    def download(self, key: str, target: BinaryIO) -> None:
        self.store.download(key, target)

    def upload(self, key: str, source: str, *, replace: bool = False) -> None:
        self.store.upload(key, source, replace=replace)

    def entries_with_stats(self) -> Iterator[tuple[EntryStat, dict[str, Any] | None]]:
        return self.store.entries_with_stats()

    def total_size(self) -> int:
        return self.store.total_size()

    def eviction_order(self, protect: Iterable[str] = ()) -> Iterator[EntryStat]:
        return self.store.eviction_order(protect)

    def reindex(self) -> int:
        return self.store.reindex()
