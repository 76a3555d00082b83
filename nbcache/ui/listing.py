"""Listings shared by ``%nbcache`` and ``python -m nbcache``: the table, the summary, matching."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..cache.core import Cache, MemoryUse
from ..cache.ledger import EntryRecord
from ..entry.signing import default_secret_path
from ..settings import max_size
from ..units import format_duration, format_size

__all__ = ["entries_table", "matching_keys", "memory_line", "plural", "summary_lines", "when"]


def when(stamp: float) -> str:
    """A timestamp as listings show it: ``2026-11-21 14:05``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def entries_table(records: Sequence[EntryRecord]) -> list[str]:
    """One line per entry, most recently used first, under a header line."""
    lines = [
        f"{'key':<12}  {'size':>9}  {'created':<16}  {'last used':<16}  {'uses':>4}  "
        f"{'computed in':>11}  name"
    ]
    for rec in sorted(records, key=lambda r: r.last_used, reverse=True):
        pin = " [pinned]" if rec.pinned else ""
        lines.append(
            f"{rec.key[:12]}  {format_size(rec.size):>9}  {when(rec.created):<16}  "
            f"{when(rec.last_used):<16}  {rec.uses:>4}  "
            f"{format_duration(rec.compute_seconds):>11}  {rec.label}{pin}"
        )
    return lines


def summary_lines(cache: Cache) -> list[str]:
    """Where the store is, what it holds, its limit and the time it saved."""
    records = cache.ledger.records()
    limit = max_size()
    saved = sum(r.compute_seconds * r.uses for r in records)
    return [
        f"store:   {cache.store.location if cache.store else 'memory only'}",
        f"entries: {len(records)}, {format_size(sum(r.size for r in records))}",
        f"limit:   {format_size(limit) if limit else 'none'} (NBCACHE_MAX_SIZE)",
        f"saved:   {format_duration(saved)} of computing so far",
        f"memory:  {memory_line(cache.memory_use())}",
        f"secret:  {default_secret_path()} (or NBCACHE_SECRET)",
    ]


def memory_line(use: MemoryUse) -> str:
    """What the memory layer of this process holds, and its bounds."""
    bound = format_size(use.max_bytes) if use.max_bytes is not None else "no bound"
    line = (
        f"{use.values} of {use.max_items if use.max_items is not None else 'any number of'} "
        f"values in this process, keeping {format_size(use.kept_bytes)} alive "
        f"(bound {bound}, NBCACHE_MEMORY_SIZE)"
    )
    if use.large is None:
        return line
    line += f"; values of {format_size(use.large)} or more only while your variables hold them"
    if use.weak_values:
        many = "value" if use.weak_values == 1 else "values"
        line += f" ({use.weak_values} {many}, {format_size(use.weak_bytes)}, now)"
    return line


def matching_keys(cache: Cache, target: str) -> list[str]:
    """Entries whose key starts with ``target``, or whose name or function is ``target``;
    none for an empty target (every key starts with "", and clearing all is ``--all``)."""
    if not target.strip():
        return []
    names = {target, f"{target}()"}
    return [
        r.key
        for r in cache.ledger.records()
        if r.key.startswith(target) or r.label in names or r.identity in names
    ]


def plural(count: int, word: str = "entr") -> str:
    """``1 entry``, ``2 entries``."""
    return f"{count} {word}{'y' if count == 1 else 'ies'}"
