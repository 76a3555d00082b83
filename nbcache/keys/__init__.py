"""Keys: hashing rules, code fingerprints, what cells read and bind, call keys, why they changed.

Importing this package registers every family of hashing rules (frames,
arrays, code) with the one registry in :mod:`nbcache.keys.hashing`; that is
what keeps the rule modules free of imports of each other.
"""

from __future__ import annotations

from . import arrays, code, frames, hashing
from .hashing import HashBudgetError, LiveHandleError, describe, digest

__all__ = ["HashBudgetError", "LiveHandleError", "describe", "digest"]

hashing.register(*code.RULES, *frames.RULES, *arrays.RULES)
