"""The index's SQLite schema and its rows: the tables, their version, and how a stats
record (unsigned, so each field checked) becomes the columns eviction and listings read.

The queries that use them are :class:`nbcache.store.index.Index`'s.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from ..entry.format import bounded_json
from .base import EntryStat, eviction_rank, stat_number

__all__ = [
    "LISTED",
    "LISTING",
    "ROW",
    "SET_STATS",
    "STAT_NAMES",
    "as_int",
    "create",
    "damaged",
    "fill",
    "insert_row",
    "is_built",
    "parse_stats",
    "stat_columns",
    "take_stats",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    rank REAL NOT NULL DEFAULT 0,
    last_used REAL NOT NULL DEFAULT 0,
    has_stats INTEGER NOT NULL DEFAULT 0,
    created REAL,
    uses REAL,
    compute_seconds REAL,
    label TEXT,
    identity TEXT,
    first_line TEXT,
    pending INTEGER NOT NULL DEFAULT 0,
    writer TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS eviction ON entries (pinned, rank, last_used, key);
CREATE INDEX IF NOT EXISTS by_size ON entries (size);
CREATE INDEX IF NOT EXISTS reserved ON entries (pending) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS added AFTER INSERT ON entries
    BEGIN UPDATE totals SET bytes = bytes + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS removed AFTER DELETE ON entries
    BEGIN UPDATE totals SET bytes = bytes - OLD.size; END;
CREATE TRIGGER IF NOT EXISTS resized AFTER UPDATE OF size ON entries
    BEGIN UPDATE totals SET bytes = bytes + NEW.size - OLD.size; END;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_VERSION = "3"
_DROP = """
_DROP TABLE IF EXISTS entries;
_DROP TABLE IF EXISTS stats;
_DROP TABLE IF EXISTS totals;
_DROP TABLE IF EXISTS meta;
_DROP TABLE IF EXISTS shards;
"""
_MAX_STATS = 64 << 10


def _older_schema(db: sqlite3.Connection) -> bool:
    try:
        row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
    except sqlite3.OperationalError:
        return False  # no meta table yet: a new index
    return row is not None and row[0] != _VERSION


def create(db: sqlite3.Connection) -> None:
    """Create the tables, after dropping an index of another layout."""
    if _older_schema(db):
        _drop_older(db)
    db.executescript(_SCHEMA)


def _drop_older(db: sqlite3.Connection) -> None:
    """Drop an index of another layout (it is rebuilt, never read with the wrong
    columns), checked again under the write lock so only one process drops it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if _older_schema(db):
            for statement in _DROP.strip().splitlines():
                db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def is_built(db: sqlite3.Connection) -> bool:
    """Whether the rows were filled for this layout (not only its empty tables made)."""
    row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
    return row is not None and row[0] == _VERSION


def fill(db: sqlite3.Connection, scan: Iterable[tuple[EntryStat, Mapping[str, Any] | None]]) -> int:
    """Every row again from ``scan`` (the entry files and their stats); the number of rows."""
    db.execute("DELETE FROM entries")
    db.execute("DELETE FROM shards")  # every shard is looked at again
    count = 0
    for stat_, stats in scan:
        insert_row(db, stat_, stats, replace=True)
        count += 1
    db.execute("UPDATE totals SET bytes = (SELECT COALESCE(SUM(size), 0) FROM entries)")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (_VERSION,))
    return count


def damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not (or no longer) a database, as opposed to busy or
    read-only, which pass."""
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def parse_stats(data: str) -> dict[str, Any] | None:
    try:
        parsed = bounded_json(data.encode(), max_size=_MAX_STATS)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


STAT_NAMES = ("created", "uses", "compute_seconds", "label", "identity", "first_line")
LISTED = ("has_stats", "size", "pinned", "last_used", *STAT_NAMES)
SET_STATS = "pinned = ?, rank = ?, last_used = ?, has_stats = ?, " + ", ".join(
    f"{name} = ?" for name in STAT_NAMES
)


# The entry's own fields are cast (they become an EntryStat); stats columns come back as
# stored and are checked where they are read, as stats from any store are.
LISTING = (
    "SELECT key, CAST(size AS INTEGER), COALESCE(CAST(mtime AS REAL), 0.0), has_stats, "
    "CAST(size AS INTEGER), pinned, last_used, "
    + ", ".join(STAT_NAMES)
    + " FROM entries WHERE pending = 0"
)
ROW = "key, size, mtime, pinned, rank, last_used, has_stats, " + ", ".join(STAT_NAMES)


def insert_row(
    db: sqlite3.Connection, found: EntryStat, stats: Mapping[str, Any] | None, *, replace: bool
) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    db.execute(
        f"{verb} INTO entries ({ROW}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (found.key, found.size, found.mtime, *stat_columns(stats, found.mtime)),
    )
    if stats is not None:
        db.execute("INSERT OR REPLACE INTO stats VALUES (?, ?)", (found.key, json.dumps(stats)))


def take_stats(db: sqlite3.Connection, key: str, when: float, *, only_new: bool = False) -> None:
    """Give a new row the stats written for its key before it was published, so it ranks
    as what it is from its first moment (not as worthless, first to go)."""
    if only_new:
        row = db.execute("SELECT has_stats FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None or row[0]:
            return
    found = db.execute("SELECT data FROM stats WHERE key = ?", (key,)).fetchone()
    stats = parse_stats(found[0]) if found is not None else None
    if stats is not None:
        db.execute(
            f"UPDATE entries SET {SET_STATS} WHERE key = ?", (*stat_columns(stats, when), key)
        )


def as_int(value: Any) -> int:
    """A column SQL was asked to keep as an integer, whatever a forged row put there."""
    if value.__class__ is int:
        return int(value)
    try:
        return int(float(value)) if value is not None else 0
    except (TypeError, ValueError, OverflowError):
        return 0


def stat_columns(stats: Mapping[str, Any] | None, mtime: float) -> tuple[Any, ...]:
    """The columns of a stats record (unsigned, so each checked): pinned, rank and last use,
    which eviction orders by, then what a listing shows."""
    if not isinstance(stats, Mapping):
        return (0, 0.0, mtime, 0, None, None, None, None, None, None)
    created = stats.get("created")
    return (
        int(stats.get("pinned") is True),
        eviction_rank(stats),
        stat_number(stats, "last_used", mtime),
        1,
        stat_number(stats, "created") if created is not None else None,
        stat_number(stats, "uses"),
        stat_number(stats, "compute_seconds"),
        *(_text(stats.get(name)) for name in ("label", "identity", "first_line")),
    )


def _text(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) else None
