"""The index of a local store: size, rank, last use and stats of every entry, in SQLite.

A write adds one row and a removal deletes one, so the total size, a listing
and the cheapest entry to evict come from the index instead of a walk of every
entry file (diskcache stands on the same: SQLite in WAL mode, from the
standard library).  The files stay the truth: the index is rebuilt from them
when it is missing or damaged, in one write transaction that other processes
wait for.

SQLite's write lock is also the folder's lock for everything that changes
which entries exist: a publish first reserves its row (``pending``, counted in
the total, never evicted) in the same transaction that evicts to make room,
and settles it from the file once linked; a removal unlinks the file and
deletes its row in one transaction (:meth:`Index.exclusive`).  The mtime of
each shard folder is kept beside the rows, so the store notices files added or
removed behind its back without walking every shard.

Rows are unsigned, like stats: whoever can write the folder can write them,
so the store checks a row's claims against its file before they cost another
entry (see :mod:`nbcache.store.local`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import EntryStat, is_key
from .schema import (
    LISTED,
    LISTING,
    ROW,
    SET_STATS,
    as_int,
    create,
    damaged,
    fill,
    insert_row,
    is_built,
    parse_stats,
    stat_columns,
    take_stats,
)

__all__ = ["Index", "IndexUnavailable"]

# Writers of one folder wait for each other this long (a rebuild of 100,000 entries
# takes a few seconds); past it the index is skipped, never the write.
_BUSY_SECONDS = 15.0
_PAGE = 256


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
        self._depth = 0  # nested exclusive() blocks held by self._owner
        self._owner = 0
        self._written: tuple[str, tuple[Any, ...]] | None = None  # the last stats written
        self._broken = False  # SQLite said "malformed" inside exclusive()

    # -- connection -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        self._db = None  # a connection inherited across fork() must not be used
        try:
            db = self._open()
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
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
            create(db)
            self._build_if_needed(db)
        except BaseException:
            db.close()
            raise
        return db

    def _build_if_needed(self, db: sqlite3.Connection) -> None:
        if is_built(db):
            return
        db.execute("BEGIN IMMEDIATE")  # other processes wait: one of them builds it
        try:
            if not is_built(db):
                fill(db, self._scan())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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
                if self._depth:
                    self._broken = self._broken or damaged(exc)
                    raise IndexUnavailable(str(exc)) from exc  # exclusive() rolls back
                self._forget()
                if damaged(exc):
                    self._move_aside()  # rebuilt by the next call
                raise IndexUnavailable(str(exc)) from exc

    def _write(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``action`` in a write transaction of its own, or in the one held by
        :meth:`exclusive`."""
        if self._depth and self._owner == threading.get_ident():
            return self._run(action)
        with self.exclusive():
            return self._run(action)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the index's write lock (``BEGIN IMMEDIATE``) for the block: no other process
        or thread changes a row meanwhile, and every change in the block commits at once
        (or none, on an exception).  Nested blocks join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                self._forget()
                raise IndexUnavailable(str(exc)) from exc
            self._depth, self._owner = 1, threading.get_ident()
            try:
                yield
            except BaseException:
                self._depth = 0
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                if self._broken:
                    self._broken = False
                    self._forget()
                    self._move_aside()  # rebuilt by the next call
                raise
            self._depth = 0
            try:
                db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                self._forget()
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

    def reserve(self, key: str, size: int, when: float, writer: str, *, replace: bool) -> bool:
        """Count an entry about to be published as ``pending`` (counted in the total, never
        evicted), with the stats already written for it; True if a row was made.  A row
        there already is kept, unless ``replace``."""

        def reserve(db: sqlite3.Connection) -> bool:
            conflict = (
                "DO UPDATE SET size = excluded.size, mtime = excluded.mtime, pending = 1, "
                "writer = excluded.writer"
                if replace
                else "DO NOTHING"
            )
            written = self._written
            columns = written[1] if written is not None and written[0] == key else None
            if columns is None:
                made = db.execute(
                    "INSERT INTO entries (key, size, mtime, last_used, pending, writer) "
                    f"VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (key) {conflict}",
                    (key, size, when, when, writer),
                ).rowcount
                if made:
                    take_stats(db, key, when)
                return bool(made)
            # The stats this process has just written for it: no need to read them back.
            made = db.execute(
                f"INSERT INTO entries ({ROW}, pending, writer) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (key) {conflict}",
                (key, size, when, *columns, writer),
            ).rowcount
            if made and replace:
                db.execute(f"UPDATE entries SET {SET_STATS} WHERE key = ?", (*columns, key))
            return bool(made)

        return bool(self._write(reserve))

    def settle(self, key: str, found: EntryStat | None, *, ours: bool = False) -> None:
        """Make the row of ``key`` say what its file says: published with the file's size, or
        gone with the file.  ``ours``: this process reserved it, with its stats."""

        def settle(db: sqlite3.Connection) -> None:
            if found is None:
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                return
            made = db.execute(
                "INSERT INTO entries (key, size, mtime, last_used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET size = excluded.size, "
                "mtime = excluded.mtime, pending = 0, writer = NULL",
                (key, found.size, found.mtime, found.mtime),
            ).rowcount
            if made and not ours:
                take_stats(db, key, found.mtime, only_new=True)

        self._write(settle)

    def adopt(self, found: EntryStat, stats: Mapping[str, Any] | None) -> None:
        """Count an entry file the index did not know (copied in, or written by an nbcache
        that could not reach the index)."""
        self._write(lambda db: insert_row(db, found, stats, replace=False))

    def resize(self, key: str, size: int) -> None:
        """Correct a row's claimed size to its file's."""
        self._write(lambda db: db.execute("UPDATE entries SET size = ? WHERE key = ?", (size, key)))

    def pending(self) -> list[tuple[str, str, float, int]]:
        """Reserved rows: key, writer, when reserved, size claimed."""
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, writer, mtime, size FROM entries WHERE pending = 1"
            ).fetchall()
        )
        return [
            (k, w if isinstance(w, str) else "", float(m or 0.0), int(s or 0))
            for k, w, m, s in rows
            if is_key(k)
        ]

    def rows_in(self, shard: str) -> dict[str, tuple[int, bool]]:
        """The rows of one shard (keys starting with ``shard``): size claimed, pending."""
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, size, pending FROM entries WHERE key >= ? AND key < ?",
                (shard, shard + "g"),  # "g" sorts after every hex digit
            ).fetchall()
        )
        return {k: (as_int(s), bool(p)) for k, s, p in rows if isinstance(k, str)}

    def drop_shard(self, shard: str) -> None:
        """Delete the rows of a shard whose folder is gone, and its mark."""

        def drop(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM entries WHERE key >= ? AND key < ? AND pending = 0",
                (shard, shard + "g"),
            )
            db.execute("DELETE FROM shards WHERE name = ?", (shard,))

        self._write(drop)

    def drop_outside(self, shards: Iterable[str]) -> None:
        """Delete the published rows of every shard not in ``shards`` (one pass over the
        rows, for a listing that reads them all anyway)."""
        names = sorted(set(shards))
        marks = ", ".join("?" for _ in names)
        self._write(
            lambda db: db.execute(
                f"DELETE FROM entries WHERE pending = 0 AND substr(key, 1, 2) NOT IN ({marks})",
                names,
            )
        )

    def marks(self) -> dict[str, int]:
        """The mtime (ns) each shard folder had when the index last agreed with it."""
        rows = self._run(lambda db: db.execute("SELECT name, mtime_ns FROM shards").fetchall())
        return {name: as_int(mtime) for name, mtime in rows}

    def mark_if(self, shard: str, before: int, mtime_ns: int) -> None:
        """Move a shard's mark from ``before`` to ``mtime_ns``, if it is ``before``."""
        self._write(
            lambda db: db.execute(
                "UPDATE shards SET mtime_ns = ? WHERE name = ? AND mtime_ns = ?",
                (int(mtime_ns), shard, int(before)),
            )
        )

    def mark(self, shard: str, mtime_ns: int) -> None:
        self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO shards VALUES (?, ?)", (shard, int(mtime_ns))
            )
        )

    def claims_over(self, threshold: float, limit: int = _PAGE) -> list[tuple[str, int, bool]]:
        """Rows claiming more than ``threshold`` bytes, largest first: key, size, pending."""
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, size, pending FROM entries WHERE size > ? "
                f"ORDER BY size DESC LIMIT {int(limit)}",
                (threshold,),
            ).fetchall()
        )
        return [(k, as_int(s), bool(p)) for k, s, p in rows if isinstance(k, str)]

    def claims_below(self, threshold: float) -> list[tuple[str, int, bool]]:
        """Rows claiming fewer than ``threshold`` bytes: key, size, pending."""
        rows = self._run(
            lambda db: db.execute(
                f"SELECT key, size, pending FROM entries WHERE size < ? LIMIT {_PAGE}",
                (threshold,),
            ).fetchall()
        )
        return [(k, as_int(s), bool(p)) for k, s, p in rows if isinstance(k, str)]

    def recount(self) -> int:
        """Sum the rows again (the running total is a row anybody can write too)."""

        def recount(db: sqlite3.Connection) -> None:
            db.execute("UPDATE totals SET bytes = (SELECT COALESCE(SUM(size), 0) FROM entries)")

        self._write(recount)
        return self.total_size()

    def touch(self, key: str, when: float) -> None:
        """Set the row's last use to ``when``."""
        self._run(
            lambda db: db.execute("UPDATE entries SET last_used = ? WHERE key = ?", (when, key))
        )

    def remove(self, key: str) -> None:
        def remove(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            db.execute("DELETE FROM stats WHERE key = ?", (key,))

        self._write(remove)

    def has(self, key: str) -> bool:
        found = self._run(
            lambda db: db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone()
        )
        return found is not None

    def read_stats(self, key: str) -> dict[str, Any] | None:
        row = self._run(
            lambda db: db.execute("SELECT data FROM stats WHERE key = ?", (key,)).fetchone()
        )
        return parse_stats(row[0]) if row is not None else None

    def write_stats(self, key: str, stats: Mapping[str, Any]) -> None:
        data = json.dumps(dict(stats), sort_keys=True)

        columns = stat_columns(stats, 0.0)

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO stats VALUES (?, ?)", (key, data))
            db.execute(f"UPDATE entries SET {SET_STATS} WHERE key = ?", (*columns, key))

        self._write(write)
        self._written = (key, columns)

    def entries(self) -> list[EntryStat]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, size, mtime FROM entries WHERE pending = 0"
            ).fetchall()
        )
        return [EntryStat(k, int(s), float(m)) for k, s, m in rows if is_key(k)]

    def entries_with_stats(self) -> list[tuple[EntryStat, dict[str, Any] | None]]:
        """Every row, its stats from the columns written with them: no JSON to parse, and
        SQL casts whatever a forged index holds to the types a listing expects."""
        rows = self._run(lambda db: db.execute(LISTING).fetchall())
        names = LISTED
        return [
            (EntryStat(row[0], row[1], row[2]), dict(zip(names, row[3:], strict=True)))
            if row[3]
            else (EntryStat(row[0], row[1], row[2]), None)
            for row in rows
            if is_key(row[0])
        ]

    def total_size(self) -> int:
        row = self._run(lambda db: db.execute("SELECT bytes FROM totals").fetchone())
        return max(0, as_int(row[0])) if row is not None else 0

    def eviction_order(self, protect: Iterable[str] = ()) -> Iterator[EntryStat]:
        """Published, unpinned rows, lowest rank first then least recently used, a page at a
        time (rows removed meanwhile are simply not seen again)."""
        keep = set(protect)
        after: tuple[float, float, str] | None = None
        while True:
            page = self._page(after)
            for key, size, mtime, rank, last_used in page:
                if is_key(key) and key not in keep:
                    yield EntryStat(key, as_int(size), float(mtime))
                after = (rank, last_used, key)
            if len(page) < _PAGE:
                return

    def _page(self, after: tuple[float, float, str] | None) -> list[tuple[Any, ...]]:
        query = (
            "SELECT key, size, mtime, rank, last_used FROM entries WHERE pinned = 0 AND pending = 0"
        )
        args: tuple[Any, ...] = ()
        if after is not None:
            query += " AND (rank, last_used, key) > (?, ?, ?)"
            args = after
        query += f" ORDER BY rank, last_used, key LIMIT {_PAGE}"
        return list(self._run(lambda db: db.execute(query, args).fetchall()))

    def rebuild(self) -> int:
        """Rebuild every row from the files; return how many entries there are."""
        return int(self._write(lambda db: fill(db, self._scan())))
