"""nbcache: memoization for Jupyter that survives restarts and is never stale.

``import nbcache`` never imports IPython or ipywidgets.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .cache.core import Cache, Hit, Outcome
from .cache.default import default_cache
from .cache.ledger import EntryRecord
from .entry.pickling import try_pickle, try_unpickle
from .errors import (
    CacheError,
    CacheWarning,
    ExecutorError,
    ForeignEntryError,
    IntegrityError,
    KeyPicklingError,
    StoreError,
    ValuePicklingError,
    ValueUnpicklingError,
)
from .run.lru import lru_cache
from .run.memo import CacheInfo, Memoized, memoize
from .store import LocalStore, Store
from .tasks.executors import configure
from .tasks.task import progress


def browse(cache: Cache | None = None, widgets: bool | None = None) -> None:
    """Show the cache browser: entries, totals, Delete, Pin and Prune (text outside a
    Jupyter kernel; ``widgets=True`` or ``False`` forces either form)."""
    from .ui.widgets import browse as show

    show(cache, widgets)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbcache``: register the magics (imports IPython only now)."""
    from .ui.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbcache``: remove every magic and hook it registered."""
    from .ui.extension import unload

    unload(ipython)


__all__ = (
    "Cache",
    "CacheError",
    "CacheInfo",
    "CacheWarning",
    "EntryRecord",
    "ExecutorError",
    "ForeignEntryError",
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
    "browse",
    "configure",
    "default_cache",
    "load_ipython_extension",
    "lru_cache",
    "memoize",
    "progress",
    "try_pickle",
    "try_unpickle",
    "unload_ipython_extension",
)
