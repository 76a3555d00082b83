"""The index of a local store: size, rank, last use and stats of every entry, in SQLite.

A write adds one row and a removal deletes one, so the total size, a listing
and the cheapest entry to evict come from the index instead of a walk of every
entry file (diskcache stands on the same: SQLite in WAL mode, from the
standard library).  The files stay the truth: the index is rebuilt from them
when it is missing or damaged, in one write transaction that other processes
wait for, and a row whose file is gone is dropped when it is next touched.

Rows are unsigned, like stats: whoever can write the folder can write them,
which changes at most what a listing shows and the order of eviction.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..entry.format import bounded_json
from .base import EntryStat, eviction_rank, is_key, stat_number

__all__ = ["Index", "IndexUnavailable"]

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
    first_line TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS eviction ON entries (pinned, rank, last_used, key);
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
_VERSION = "2"
_DROP = """
DROP TABLE IF EXISTS entries;
DROP TABLE IF EXISTS stats;
DROP TABLE IF EXISTS totals;
DROP TABLE IF EXISTS meta;
"""
# Writers of one folder wait for each other this long (a rebuild of 100,000 entries
# takes a few seconds); past it the index is skipped, never the write.
_BUSY_SECONDS = 15.0
_PAGE = 256
_MAX_STATS = 64 << 10


class IndexUnavailable(Exception):
    """The index cannot be used now (read-only folder, locked too long): fall back to files."""


def _regular_or_absent(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


class Index:
    """The SQLite index at ``path``; ``scan`` lists the entry files and their stats to rebuild it.

    Every method raises :class:`IndexUnavailable` when the index cannot be used; the
    store then answers from its files.
    """

    def __init__(
        self,
        path: Path,
        scan: Callable[[], Iterable[tuple[EntryStat, Mapping[str, Any] | None]]],
    ) -> None:
        self.path = path
        self._scan = scan
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    # -- connection -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        self._db = None  # a connection inherited across fork() must not be used
        try:
            db = self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise IndexUnavailable(str(exc)) from exc
            self._move_aside()
            try:
                db = self._open()
            except sqlite3.Error as again:
                raise IndexUnavailable(str(again)) from again
        except (OSError, sqlite3.Error) as exc:
            raise IndexUnavailable(str(exc)) from exc
        self._db, self._pid = db, os.getpid()
        return db

    def _open(self) -> sqlite3.Connection:
        # SQLite follows links and opens FIFOs: anything but a regular file (or nothing)
        # at the index's names was planted, and is moved out of the way first.
        for name in ("", "-wal", "-shm", "-journal"):
            if not _regular_or_absent(Path(f"{self.path}{name}")):
                self._move_aside()
                break
        db = sqlite3.connect(
            self.path, timeout=_BUSY_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit waits for no fsync; a power loss may drop the last rows,
            # which `python -m nbcache check` (or a damaged index) rebuilds.
            db.execute("PRAGMA synchronous=NORMAL")
            if _older_schema(db):
                self._drop_older(db)
            db.executescript(_SCHEMA)
            self._build_if_needed(db)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
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

    def _build_if_needed(self, db: sqlite3.Connection) -> None:
        if self._built(db):
            return
        db.execute("BEGIN IMMEDIATE")  # other processes wait: one of them builds it
        try:
            if not self._built(db):
                self._fill(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _built(db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        return row is not None and row[0] == _VERSION

    def _fill(self, db: sqlite3.Connection) -> int:
        db.execute("DELETE FROM entries")
        count = 0
        for stat_, stats in self._scan():
            db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (stat_.key, stat_.size, stat_.mtime, *_columns(stats, stat_.mtime)),
            )
            if stats is not None:
                db.execute(
                    "INSERT OR REPLACE INTO stats VALUES (?, ?)", (stat_.key, json.dumps(stats))
                )
            count += 1
        db.execute("UPDATE totals SET bytes = (SELECT COALESCE(SUM(size), 0) FROM entries)")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (_VERSION,))
        return count

    def _move_aside(self) -> None:
        """Drop a damaged or planted index (unlinking a link or FIFO never touches what it
        points to); the next connection rebuilds it from the files."""
        for name in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{name}")

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            db = self._connect()
            try:
                return action(db)
            except sqlite3.DatabaseError as exc:
                self._forget()
                if _damaged(exc):
                    self._move_aside()  # rebuilt by the next call
                raise IndexUnavailable(str(exc)) from exc

    def _forget(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def close(self) -> None:
        with self._lock:
            self._forget()

    # -- rows ----------------------------------------------------------------

    def add(self, key: str, size: int, mtime: float) -> None:
        """Count an entry about to be published (kept if it is there already)."""

        def add(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO entries (key, size, mtime, last_used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (key, size, mtime, mtime),
            )

        self._run(add)

    def touch(self, key: str, when: float) -> None:
        """Set the row's last use to ``when``."""
        self._run(
            lambda db: db.execute("UPDATE entries SET last_used = ? WHERE key = ?", (when, key))
        )

    def remove(self, key: str) -> None:
        def remove(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            db.execute("DELETE FROM stats WHERE key = ?", (key,))
            db.execute("COMMIT")

        self._run(remove)

    def has(self, key: str) -> bool:
        found = self._run(
            lambda db: db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone()
        )
        return found is not None

    def read_stats(self, key: str) -> dict[str, Any] | None:
        row = self._run(
            lambda db: db.execute("SELECT data FROM stats WHERE key = ?", (key,)).fetchone()
        )
        return _parse(row[0]) if row is not None else None

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        data = json.dumps(dict(stats), sort_keys=True)

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO stats VALUES (?, ?)", (key, data))
            db.execute(f"UPDATE entries SET {_SET} WHERE key = ?", (*_columns(stats, 0.0), key))
            db.execute("COMMIT")

        self._run(write)

    def entries(self) -> list[EntryStat]:
        rows = self._run(lambda db: db.execute("SELECT key, size, mtime FROM entries").fetchall())
        return [EntryStat(k, int(s), float(m)) for k, s, m in rows if is_key(k)]

    def entries_with_stats(self) -> list[tuple[EntryStat, dict[str, Any] | None]]:
        """Every row, its stats from the columns written with them: no JSON to parse, and
        SQL casts whatever a forged index holds to the types a listing expects."""
        rows = self._run(lambda db: db.execute(_LISTING).fetchall())
        names = _LISTED
        return [
            (EntryStat(row[0], row[1], row[2]), dict(zip(names, row[3:], strict=True)))
            if row[3]
            else (EntryStat(row[0], row[1], row[2]), None)
            for row in rows
            if is_key(row[0])
        ]

    def total_size(self) -> int:
        row = self._run(lambda db: db.execute("SELECT bytes FROM totals").fetchone())
        return max(0, int(row[0])) if row is not None else 0

    def eviction_order(self, protect: Iterable[str] = ()) -> Iterator[EntryStat]:
        """Unpinned rows, lowest rank first then least recently used, a page at a time (rows
        removed meanwhile are simply not seen again)."""
        keep = set(protect)
        after: tuple[float, float, str] | None = None
        while True:
            page = self._page(after)
            for key, size, mtime, rank, last_used in page:
                if is_key(key) and key not in keep:
                    yield EntryStat(key, int(size), float(mtime))
                after = (rank, last_used, key)
            if len(page) < _PAGE:
                return

    def _page(self, after: tuple[float, float, str] | None) -> list[tuple[Any, ...]]:
        query = "SELECT key, size, mtime, rank, last_used FROM entries WHERE pinned = 0"
        args: tuple[Any, ...] = ()
        if after is not None:
            query += " AND (rank, last_used, key) > (?, ?, ?)"
            args = after
        query += f" ORDER BY rank, last_used, key LIMIT {_PAGE}"
        return list(self._run(lambda db: db.execute(query, args).fetchall()))

    def rebuild(self) -> int:
        """Rebuild every row from the files; return how many entries there are."""

        def rebuild(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                count = self._fill(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return count

        return int(self._run(rebuild))


def _older_schema(db: sqlite3.Connection) -> bool:
    try:
        row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
    except sqlite3.OperationalError:
        return False  # no meta table yet: a new index
    return row is not None and row[0] != _VERSION


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not (or no longer) a database, as opposed to busy or
    read-only, which pass."""
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _parse(data: str) -> dict[str, Any] | None:
    try:
        parsed = bounded_json(data.encode(), max_size=_MAX_STATS)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


_STAT_NAMES = ("created", "uses", "compute_seconds", "label", "identity", "first_line")
_LISTED = ("has_stats", "size", "pinned", "last_used", *_STAT_NAMES)
_SET = "pinned = ?, rank = ?, last_used = ?, has_stats = ?, " + ", ".join(
    f"{name} = ?" for name in _STAT_NAMES
)


# The entry's own fields are cast (they become an EntryStat); stats columns come back as
# stored and are checked where they are read, as stats from any store are.
_LISTING = (
    "SELECT key, CAST(size AS INTEGER), COALESCE(CAST(mtime AS REAL), 0.0), has_stats, "
    "CAST(size AS INTEGER), pinned, last_used, " + ", ".join(_STAT_NAMES) + " FROM entries"
)


def _columns(stats: Mapping[str, Any] | None, mtime: float) -> tuple[Any, ...]:
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
