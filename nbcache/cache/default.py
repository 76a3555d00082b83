"""Settings read from the environment, each with a documented default."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from ..errors import CacheError
from ..store import FsspecStore, LeasedStore, LocalStore, Store, TieredStore
from ..store.leases.redis import redis_client
from ..units import parse_size
from .core import Cache

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_MAX_SIZE",
    "check_store",
    "default_cache",
    "fsync_enabled",
    "max_size",
    "open_store",
    "set_default_cache",
    "store_location",
    "tier_location",
]

DEFAULT_DIR = ".nbcache"
# Big enough for a few fitted models and feature tables, small enough not to
# fill a laptop's disk unnoticed.
DEFAULT_MAX_SIZE = "10GB"
_OFF = {"0", "false", "no", "off"}
_UNLIMITED = {"0", "none", "unlimited", "inf"}


def store_location() -> str:
    """``NBCACHE_DIR`` or ``.nbcache`` in the working directory."""
    return os.environ.get("NBCACHE_DIR") or DEFAULT_DIR


def max_size() -> int | None:
    """``NBCACHE_MAX_SIZE`` in bytes (default 10 GB); None when set to ``none`` or ``0``.

    Raises:
        CacheError: the variable is set to something that is not a size.
    """
    text = os.environ.get("NBCACHE_MAX_SIZE", DEFAULT_MAX_SIZE).strip()
    if text.lower() in _UNLIMITED:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise CacheError(f"NBCACHE_MAX_SIZE: {exc}") from exc


def fsync_enabled() -> bool:
    """False when ``NBCACHE_FSYNC`` is 0/false/no/off: faster writes, less durable on power loss."""
    return os.environ.get("NBCACHE_FSYNC", "1").strip().lower() not in _OFF


def tier_location(url: str) -> Path | None:
    """The local folder of copies in front of the remote store ``url``; None when
    ``NBCACHE_TIER`` is off.

    Default: ``$XDG_CACHE_HOME/nbcache/tier/<digest of the URL>`` (``~/.cache/...``).
    """
    chosen = os.environ.get("NBCACHE_TIER", "").strip()
    if chosen.lower() in _OFF:
        return None
    if not chosen:
        cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        chosen = os.path.join(cache_home, "nbcache", "tier")
    return Path(chosen).expanduser() / hashlib.sha256(url.encode()).hexdigest()[:16]


def open_store(location: str | None = None) -> Store:
    """The store at ``location`` (default :func:`store_location`): a folder, or any fsspec
    URL (``s3://bucket/prefix``, ``memory://...``) with a local tier in front
    (``NBCACHE_TIER``), and leases in Redis when ``NBCACHE_LOCK_URL`` is set.

    Raises:
        CacheError: ``location`` is a URL this installation cannot open.
    """
    location = location or store_location()
    store: Store
    if location.startswith("file://"):
        location = location[len("file://") :]
    if "://" not in location:
        store = LocalStore(location, fsync=fsync_enabled())
    else:
        store = FsspecStore(location)
        tier = tier_location(location)
        if tier is not None:
            store = TieredStore(LocalStore(tier, fsync=fsync_enabled()), store, max_size())
    lock_url = os.environ.get("NBCACHE_LOCK_URL", "").strip()
    if lock_url:
        store = LeasedStore(store, redis_client(lock_url))
    return store


def check_store(store: Store) -> None:
    """Raise StoreError if ``store`` (or the remote behind its tier) cannot be reached."""
    inner = getattr(store, "store", None) or getattr(store, "remote", None)
    if inner is not None:
        check_store(inner)
    check = getattr(store, "check", None)
    if check is not None:
        check()


_default: Cache | None = None
_default_lock = threading.Lock()


def default_cache() -> Cache:
    """The process-wide cache on the configured store, made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Cache(open_store(), max_size=max_size())
        return _default


def set_default_cache(cache: Cache | None) -> None:
    """Replace the process-wide cache (None: rebuild it from the environment on next use)."""
    global _default
    with _default_lock:
        _default = cache
