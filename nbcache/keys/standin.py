"""A value not loaded yet, standing in for itself by the digest recorded when it was made.

A whole-notebook run that restores most cells need not unpickle what they bound:
each entry records the digest and summary of every value it binds, and a
:class:`StandIn` stands in the namespace for the value until a cell that runs
reads it.  Hashing a :class:`StandIn` gives the recorded digest, so a later
cell's key is the key it would have with the value itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["StandIn"]


class StandIn:
    """Stands for a value kept in the store under ``key``: its digest and summary."""

    __slots__ = ("described", "digest", "key", "name", "string_reads")

    def __init__(
        self,
        key: str,
        name: str,
        digest: str,
        described: Mapping[str, Any],
        string_reads: tuple[str, ...] = (),
    ) -> None:
        self.key = key
        self.name = name  # the variable in the entry ("" for the cell's result)
        self.digest = digest
        self.described = dict(described)
        # a str value's names_in_string (a query, a formula): keys that read it hash them
        self.string_reads = string_reads

    def __repr__(self) -> str:
        # Seen only if a cell reads a value nbcache failed to load: say so plainly.
        return f"<{self.name or 'result'}: not loaded from nbcache's store yet>"
