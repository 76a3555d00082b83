"""Stores: where entries live. The default is a local folder."""

from __future__ import annotations

from .base import EntryStat, Lease, Store, check_key
from .local import LocalStore

__all__ = ["EntryStat", "Lease", "LocalStore", "Store", "check_key"]
