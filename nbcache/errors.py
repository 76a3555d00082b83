"""nbcache's one error tree and its warning category.

Every error nbcache raises derives from :class:`CacheError`, is chained to its
cause (``raise ... from exc``) and says what to do next.  This module imports
nothing of nbcache so every other module can use it.
"""

from __future__ import annotations

import warnings

__all__ = [
    "CacheError",
    "CacheWarning",
    "ExecutorError",
    "ForeignEntryError",
    "IntegrityError",
    "KeyPicklingError",
    "StoreError",
    "ValuePicklingError",
    "ValueUnpicklingError",
    "warn",
]


class CacheError(Exception):
    """Base of every error nbcache raises."""


class KeyPicklingError(CacheError):
    """A value that is part of a cache key cannot be hashed."""


class ValuePicklingError(CacheError):
    """A value to be stored cannot be pickled."""


class ValueUnpicklingError(CacheError):
    """Stored bytes could not be turned back into a value."""


class IntegrityError(CacheError):
    """A stored entry is corrupt, truncated, foreign or its signature is wrong."""


class ForeignEntryError(IntegrityError):
    """A stored entry is signed with another secret: someone else's, left where it is."""


class StoreError(CacheError):
    """The store could not be read or written (permissions, full disk, ...)."""


class ExecutorError(CacheError):
    """The executor asked for cannot run work: not installed, not configured, or unreachable."""


class CacheWarning(UserWarning):
    """nbcache degraded instead of failing: the message says what happened."""


def warn(message: str, stacklevel: int = 2) -> None:
    """Issue one :class:`CacheWarning` line; callers never raise instead."""
    warnings.warn(message, CacheWarning, stacklevel=stacklevel + 1)
