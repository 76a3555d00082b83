"""Settings read from the environment, each with a documented default."""

from __future__ import annotations

import os
import threading

from .cache import Cache
from .errors import CacheError
from .store import LocalStore, Store
from .units import parse_size

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_MAX_SIZE",
    "default_cache",
    "fsync_enabled",
    "max_size",
    "open_store",
    "set_default_cache",
    "store_location",
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


def open_store(location: str | None = None) -> Store:
    """The store at ``location`` (default :func:`store_location`).

    Raises:
        CacheError: ``location`` is a URL this installation cannot open.
    """
    location = location or store_location()
    if location.startswith("file://"):
        location = location[len("file://") :]
    elif "://" in location:
        raise CacheError(
            f"cannot open the store {location!r}: this nbcache stores in local or mounted "
            "folders only. Set NBCACHE_DIR to a folder path."
        )
    return LocalStore(location, fsync=fsync_enabled())


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
