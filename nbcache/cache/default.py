"""The default cache: the store the settings name, the user's secret, and what happens
when either cannot be used (one warning, then caching in memory only: never an error
before a cell's body runs).
"""

from __future__ import annotations

import threading

from .. import settings
from ..entry.signing import Signer, load_secret
from ..errors import CacheError, warn
from ..store import FsspecStore, LeasedStore, LocalStore, Store, TieredStore
from ..store.leases.redis import redis_client
from .core import Cache

__all__ = ["check_store", "default_cache", "open_store", "set_default_cache"]


def open_store(location: str | None = None) -> Store:
    """The store at ``location`` (default ``NBCACHE_DIR``, see
    :func:`~nbcache.settings.store_location`): a folder, or any fsspec URL
    (``s3://bucket/prefix``, ``memory://...``) with a local tier in front
    (``NBCACHE_TIER``), and leases in Redis when ``NBCACHE_LOCK_URL`` is set.

    Raises:
        CacheError: ``location`` is a URL this installation cannot open, or
            ``NBCACHE_LOCK_URL`` cannot be used.
    """
    store = _folder_or_url(location or settings.store_location())
    url = settings.lock_url()
    if url:
        store = LeasedStore(store, redis_client(url))
    return store


def _folder_or_url(location: str) -> Store:
    store: Store
    if location.startswith("file://"):
        location = location[len("file://") :]
    if "://" not in location:
        return LocalStore(location, fsync=settings.fsync_enabled())
    store = FsspecStore(location)
    tier = settings.tier_location(location)
    if tier is not None:
        local = LocalStore(tier, fsync=settings.fsync_enabled())
        store = TieredStore(local, store, settings.max_size())
    return store


def check_store(store: Store) -> None:
    """Raise StoreError if ``store`` (or the remote behind its tier) cannot be reached."""
    store.check()


def _default_store() -> Store | None:
    """The configured store, or None (with one warning saying why and what to do)."""
    location = settings.store_location()
    try:
        store = _folder_or_url(location)
        if isinstance(store, LocalStore):
            store.check()  # cheap here; a bucket is asked on first use, not at import
    except CacheError as exc:
        warn(f"nbcache: caching in memory only: {exc}", stacklevel=4)
        return None
    url = settings.lock_url()
    if url:
        try:
            store = LeasedStore(store, redis_client(url))
        except CacheError as exc:
            settings.unusable_lock_url(url, _first_line(exc))
    return store


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


_default: Cache | None = None
_default_lock = threading.Lock()


def default_cache() -> Cache:
    """The process-wide cache on the configured store, made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = _make_default()
        return _default


def _make_default() -> Cache:
    store = _default_store()
    if store is None:
        return Cache(None, max_size=settings.max_size())
    try:
        signer = Signer(load_secret())
    except CacheError as exc:
        # Without the secret nothing can be checked: nothing is read, and nothing removed.
        warn(f"nbcache: caching in memory only: {exc}", stacklevel=4)
        return Cache(None, max_size=settings.max_size())
    return Cache(store, signer=signer, max_size=settings.max_size())


def set_default_cache(cache: Cache | None) -> None:
    """Replace the process-wide cache (None: rebuild it from the environment on next use)."""
    global _default
    with _default_lock:
        _default = cache
