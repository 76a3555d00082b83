"""Stores: where entries live. The default is a local folder; any fsspec URL works too."""

from __future__ import annotations

from .base import EntryStat, Lease, Store, check_key
from .leases.redis import LeasedStore
from .local import LocalStore
from .remote import FsspecStore
from .tiered import TieredStore

__all__ = [
    "EntryStat",
    "FsspecStore",
    "Lease",
    "LeasedStore",
    "LocalStore",
    "Store",
    "TieredStore",
    "check_key",
]
