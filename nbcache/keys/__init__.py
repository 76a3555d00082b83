"""Keys: hashing rules, code fingerprints, what cells read and bind, call keys, why they changed.

Importing this package registers every family of hashing rules with the one
registry in :mod:`nbcache.keys.hashing`, in the order they are asked; that is
what keeps the rule modules free of imports of each other.  Python imports a
package before any of its modules, so no digest runs without them.
"""

from __future__ import annotations

from ..entry.mainclasses import set_class_digest
from . import arrays, code, frames, hashing
from .classes import describe
from .hashing import HashBudgetError, LiveHandleError, digest, drawn_on
from .rules import containers, handles, names, ndarrays, objects

__all__ = ["HashBudgetError", "LiveHandleError", "describe", "digest", "drawn_on"]

hashing.register(
    *containers.RULES,  # exact builtins first: most objects are these
    *handles.RULES,  # before anything could walk into a figure
    *code.RULES,  # local functions, classes and modules by their code
    *frames.RULES,
    *arrays.RULES,
    *names.RULES,  # installed code by name and version
    *ndarrays.RULES,
    *objects.RULES,  # plain objects, then the reduce protocol for the rest
)
# A notebook class restored from the store is the live one when its definition is the same.
set_class_digest(digest)
