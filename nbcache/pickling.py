"""The public face of :mod:`nbcache.entry.pickling`: safe pickling, plain bytes in and out."""

from __future__ import annotations

from .entry.pickling import try_pickle, try_unpickle

__all__ = ["try_pickle", "try_unpickle"]
