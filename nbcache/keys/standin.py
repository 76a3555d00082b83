"""A value not loaded yet, standing in for itself by the digest recorded when it was made.

A whole-notebook run that restores most cells need not unpickle what they bound,
nor import the libraries they imported: each entry records the digest and
summary of every value it binds, and a :class:`StandIn` stands in the namespace
for the value until a cell that runs reads it.  Hashing a :class:`StandIn`
gives the recorded digest, so a later cell's key is the key it would have with
the value itself.  A stand-in for a module or for a library's function or class
says where it is imported from instead of which entry to load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["StandIn"]


class StandIn:
    """Stands for a value kept in the store under ``key``: its digest and summary."""

    __slots__ = (
        "described",
        "digest",
        "fingerprint",
        "imports",
        "key",
        "loaded",
        "name",
        "string_reads",
    )

    def __init__(
        self,
        key: str,
        name: str,
        digest: str,
        described: Mapping[str, Any],
        string_reads: tuple[str, ...] = (),
        *,
        imports: str = "",
        fingerprint: str = "",
    ) -> None:
        self.key = key
        self.name = name  # the variable in the entry ("" for the cell's result)
        self.digest = digest
        self.described = dict(described)
        # a str value's names_in_string (a query, a formula): keys that read it hash them
        self.string_reads = string_reads
        # "module" or "module:qual.name": brought back by importing, not from the entry
        self.imports = imports
        # a module's fingerprint, which code reading it as a global hashes (not its digest)
        self.fingerprint = fingerprint
        # (value,) once a result's stand-in was loaded where IPython keeps it (``_``): its
        # display hook, which still holds the stand-in, is told (see nbcache.ui.ipython)
        self.loaded: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        # Seen only if a cell reads a value nbcache failed to load: say so plainly.
        return f"<{self.name or 'result'}: not loaded from nbcache's store yet>"
