"""nbcache: memoization for Jupyter that survives restarts and is never stale.

``import nbcache`` never imports IPython or ipywidgets.
"""

from __future__ import annotations

from ._version import __version__
from .cache import Cache, EntryRecord, Hit, Outcome
from .config import default_cache
from .errors import (
    CacheError,
    CacheWarning,
    IntegrityError,
    KeyPicklingError,
    StoreError,
    ValuePicklingError,
    ValueUnpicklingError,
)
from .lru import lru_cache
from .memo import CacheInfo, Memoized, memoize
from .pickling import try_pickle, try_unpickle
from .store import LocalStore, Store

__all__ = (
    "Cache",
    "CacheError",
    "CacheInfo",
    "CacheWarning",
    "EntryRecord",
    "Hit",
    "IntegrityError",
    "KeyPicklingError",
    "LocalStore",
    "Memoized",
    "Outcome",
    "Store",
    "StoreError",
    "ValuePicklingError",
    "ValueUnpicklingError",
    "__version__",
    "default_cache",
    "lru_cache",
    "memoize",
    "try_pickle",
    "try_unpickle",
)
