"""The local store's index against real processes and real folders: writers that evict
each other, writers killed at any moment, files copied in or deleted by hand, and rows
that claim what their file does not.  The index must end equal to the files, and the
folder within its limit (plus at most one entry).

Children are small scripts run with ``sys.executable``; they synchronise with the test
through pipes and files, never through sleeps.  Subprocess timeouts only guard hangs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbcache import Cache
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from nbcache.store.base import is_key

SECRET = b"index-concurrency-tests-secret!!"
HANG = 120.0

# One child: ``python -c CHILD ROOT WORKER ROLE LIMIT SEED``.  Roles: "write" (put only),
# "mixed" (put, evict, list, remove, clear), "forever" (put until killed).
CHILD = textwrap.dedent(
    """
    import random, sys
    from nbcache import Cache, LocalStore
    from nbcache.entry.signing import Signer

    root, worker, role, limit, seed = sys.argv[1:6]
    rng = random.Random(int(seed))
    cache = Cache(
        LocalStore(root, fsync=False),
        signer=Signer(SECRET),
        max_size=int(limit),
        memory_items=0,
    )
    keys = []
    n = 0
    print("started", flush=True)
    while role == "forever" or n < 200:
        n += 1
        pick = rng.random() if role == "mixed" else 0.0
        if pick < 0.7:
            key = f"{int(worker):04x}{n:028x}"
            cache.put(key, b"v" * rng.randrange(100, 1500), {"compute_seconds": rng.random()})
            keys.append(key)
        elif pick < 0.8:
            cache.ledger.evict()
        elif pick < 0.9:
            cache.ledger.records()
        elif pick < 0.98:
            if keys:
                cache.remove(rng.choice(keys))
        else:
            cache.clear()
    print("done", flush=True)
    """
).replace("SECRET", repr(SECRET))


def _children(root: Path, roles: list[str], limit: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(n), role, str(limit), str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n, role in enumerate(roles)
    ]


def _files(root: Path) -> dict[str, int]:
    """Every entry file on disk, by key: what the index must equal."""
    return {
        path.name: path.stat().st_size
        for path in (root / "v1" / "entries").glob("*/*")
        if is_key(path.name) and path.is_file()
    }


def _rows(root: Path) -> dict[str, int]:
    """Every row of the index, read with SQLite itself (a listing would repair it first)."""
    db = sqlite3.connect(root / "v1" / "index.sqlite")
    try:
        return dict(db.execute("SELECT key, size FROM entries").fetchall())
    finally:
        db.close()


def _cache(root: Path, limit: int | None = None) -> Cache:
    return Cache(LocalStore(root), signer=Signer(SECRET), max_size=limit)


def _entry_size(root: Path, payload: int) -> int:
    """The size in the store of an entry holding ``payload`` bytes."""
    probe = root.parent / f"probe-{payload}"
    return _cache(probe).put("ab" * 16, b"v" * payload)


def test_writers_that_evict_each_other_leave_no_file_unindexed(tmp_path: Path) -> None:
    """Four processes put 200 small values each under a 40 KB limit: no entry file the index
    never learns of, and the folder within its limit."""
    root = tmp_path / "store"
    limit = 40_000
    procs = _children(root, ["write"] * 4, limit)
    assert all(proc.wait(HANG) == 0 for proc in procs)
    files, rows = _files(root), _rows(root)
    assert rows == files
    assert sum(files.values()) <= limit


def _copy_entries(source: Path, target: Path) -> None:
    for path in (source / "v1" / "entries").glob("*/*"):
        folder = target / "v1" / "entries" / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / path.name)


def test_entries_copied_in_are_listed_pruned_and_cleared(tmp_path: Path) -> None:
    """Entry files copied in from another store with the same secret are listed, pruned,
    evicted and cleared like the store's own."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    cache = _cache(mine)
    for n in range(2):
        cache.put(f"{n:032x}", n, {"compute_seconds": 5.0})
    other = _cache(theirs)
    for n in range(2, 5):
        other.put(f"{n:032x}", n, {"compute_seconds": 5.0})
    _copy_entries(theirs, mine)
    assert len(cache.ledger.records()) == 5  # list and info
    assert len(_cache(mine).ledger.records()) == 5
    assert cache.ledger.prune(older_than=3600) == []
    assert cache.clear() == 5
    assert _files(mine) == {} and _rows(mine) == {}

    _copy_entries(theirs, mine)
    one = max(_files(mine).values())
    limited = _cache(mine, limit=4 * one)
    for n in range(5, 8):  # eviction counts the copies: the folder keeps its limit
        limited.put(f"{n:032x}", n, {"compute_seconds": 5.0})
    assert sum(_files(mine).values()) <= 4 * one
    assert _rows(mine) == _files(mine)


def test_entries_deleted_by_hand_cost_no_other_entry(tmp_path: Path) -> None:
    """Rows of entries deleted by hand vanish from listings, and their claimed sizes make no
    later write evict a live entry."""
    root = tmp_path / "store"
    payload = 48_000
    cache = _cache(root, limit=500_000)
    for n in range(10):  # precious: eviction would take any new entry first
        cache.put(f"{n:032x}", bytes([n]) * payload, {"compute_seconds": 100.0})
    for path in (root / "v1" / "entries").glob("*/*"):
        path.unlink()  # by hand, behind nbcache's back
    assert cache.ledger.records() == []
    fresh = _cache(root, limit=500_000)
    for n in range(10, 19):  # 9 writes, 9 x 49 KB < 500 KB: all of them stay
        fresh.put(f"{n:032x}", bytes([n]) * payload, {"compute_seconds": 1.0})
    assert len(fresh.ledger.records()) == 9
    assert _rows(root) == _files(root) and len(_files(root)) == 9


def test_entries_deleted_by_hand_between_writes_cost_no_other_entry(tmp_path: Path) -> None:
    """The same without a listing in between: the writes themselves notice."""
    root = tmp_path / "store"
    payload = 48_000
    cache = _cache(root, limit=500_000)
    for n in range(10):
        cache.put(f"{n:032x}", bytes([n]) * payload, {"compute_seconds": 100.0})
    for path in (root / "v1" / "entries").glob("*/*"):
        path.unlink()
    for n in range(10, 19):
        cache.put(f"{n:032x}", bytes([n]) * payload, {"compute_seconds": 1.0})
    assert len(_files(root)) == 9
    assert _rows(root) == _files(root)


def test_rows_deleted_behind_the_back_do_not_count_towards_the_limit(tmp_path: Path) -> None:
    """A hand deletion between writes of one process: the next eviction sees it, and the
    rows of the deleted (precious) entries cost no new entry its life."""
    root = tmp_path / "store"
    size = _entry_size(tmp_path, 1000)
    cache = _cache(root, limit=5 * size + 500)  # five entries, not six
    for n in range(5):
        cache.put(f"{n:032x}", bytes([n]) * 1000, {"compute_seconds": 100.0})
    for n in range(3):
        path = cache.store.entry_path(f"{n:032x}")  # type: ignore[union-attr]
        path.unlink()
    for n in range(5, 8):
        cache.put(f"{n:032x}", bytes([n]) * 1000, {"compute_seconds": 1.0})
    assert sorted(_files(root)) == [f"{n:032x}" for n in (3, 4, 5, 6, 7)]


def test_the_shell_lists_and_clears_entries_copied_in(tmp_path: Path) -> None:
    """``nbcache list`` shows, and ``nbcache clear --all`` removes, entry files copied in
    from another store with the same secret."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for n in range(2):
        _cache(mine).put(f"{n:032x}", n)
    for n in range(2, 5):
        _cache(theirs).put(f"{n:032x}", n)
    _copy_entries(theirs, mine)
    env = {**os.environ, "NBCACHE_DIR": str(mine), "NBCACHE_SECRET": SECRET.decode()}

    def shell(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nbcache", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG,
            check=True,
        )
        return done.stdout

    listing = shell("list")
    assert all(f"{n:032x}"[:12] in listing for n in range(5)), listing
    assert "removed 5 entries" in shell("clear", "--all")
    assert _files(mine) == {}


def _forge(root: Path, key: str, size: int, *, pinned: bool) -> None:
    db = sqlite3.connect(root / "v1" / "index.sqlite")
    db.execute(
        "INSERT INTO entries (key, size, mtime, pinned, rank, last_used, has_stats) "
        "VALUES (?, ?, 0, ?, 1e9, 0, 1)",
        (key, size, int(pinned)),
    )
    db.commit()
    db.close()


@pytest.mark.parametrize("pinned", [True, False])
def test_a_forged_row_costs_no_entry(tmp_path: Path, pinned: bool) -> None:
    """One row that claims a petabyte (pinned, or ranked above everything) makes no write
    evict another entry: its claim is checked against the file first."""
    root = tmp_path / "store"
    cache = _cache(root, limit=100_000)
    for n in range(5):
        cache.put(f"{n:032x}", bytes([n]) * 1000, {"compute_seconds": 1.0})
    _forge(root, "f" * 32, 10**15, pinned=pinned)
    for n in range(5, 8):
        cache.put(f"{n:032x}", bytes([n]) * 1000, {"compute_seconds": 1.0})
    assert len(_files(root)) == 8
    assert len(cache.ledger.records()) == 8
    assert "f" * 32 not in _rows(root)


def test_a_row_claiming_less_than_its_file_is_corrected(tmp_path: Path) -> None:
    """A row that claims a tiny size for a big file does not let the folder grow past its
    limit once eviction looks at it."""
    root = tmp_path / "store"
    size = _entry_size(tmp_path, 20_000)
    cache = _cache(root, limit=3 * size)
    for n in range(3):
        cache.put(f"{n:032x}", bytes([n]) * 20_000)
    db = sqlite3.connect(root / "v1" / "index.sqlite")
    db.execute("UPDATE entries SET size = -1000000")
    db.execute("UPDATE totals SET bytes = 0")
    db.commit()
    db.close()
    for n in range(3, 6):
        cache.put(f"{n:032x}", bytes([n]) * 20_000)
    assert sum(_files(root).values()) <= 3 * size + size
    assert _rows(root) == _files(root)


# A child killed at the wrong moment of a publish: ``python -c KILLED ROOT WHEN``.
KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from nbcache import Cache, LocalStore
    from nbcache.entry.signing import Signer

    root, when = sys.argv[1:3]
    store = LocalStore(root, fsync=False)
    cache = Cache(store, signer=Signer(SECRET), max_size=10**6)
    cache.put("aa" * 16, b"first" * 100)
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        if when == "after":
            real_link(src, dst, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    os.link = link
    cache.put("bb" * 16, b"second" * 100)
    """
).replace("SECRET", repr(SECRET))


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_writer_killed_while_publishing_leaves_the_index_exact(tmp_path: Path, when: str) -> None:
    """Killed just before or just after its link: the next listing counts the entry it
    linked, forgets the one it did not, and clear leaves no file."""
    root = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(root), when], timeout=HANG, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    cache = _cache(root)
    expected = {"aa" * 16} | ({"bb" * 16} if when == "after" else set())
    assert {r.key for r in cache.ledger.records()} == expected
    assert _rows(root) == _files(root)
    assert cache.clear() == len(expected)
    assert _files(root) == {} and _rows(root) == {}


def _locked_total(root: Path) -> tuple[int, int]:
    """The bytes of every entry file on disk, summed while holding the index's write lock
    (so no publish or eviction is half done), and the largest file."""
    db = sqlite3.connect(root / "v1" / "index.sqlite", timeout=HANG, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        files = _files(root)
        db.execute("ROLLBACK")
    finally:
        db.close()
    return sum(files.values()), max(files.values(), default=0)


def test_stress_writers_evictors_listers_and_kills(tmp_path: Path) -> None:
    """Four processes writing, evicting, listing, removing and clearing at once under a small
    limit, sampled under the lock; then writers killed at random moments.  The index ends
    equal to the files, and the folder within its limit plus at most one entry."""
    root = tmp_path / "store"
    limit = 30_000
    rng = random.Random(22)
    procs = _children(root, ["mixed", "mixed", "write", "mixed"], limit)
    samples = 0
    while any(proc.poll() is None for proc in procs) and samples < 200:
        if (root / "v1" / "index.sqlite").exists():
            total, largest = _locked_total(root)
            assert total <= limit + largest
            samples += 1
    assert all(proc.wait(HANG) == 0 for proc in procs)
    assert samples > 0
    assert _rows(root) == _files(root)

    kills = 0
    for _round in range(4):
        procs = _children(root, ["forever"] * 3, limit)
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        # Let them write a random while, then kill each at its own moment.
        for proc in rng.sample(procs, len(procs)):
            for _ in range(rng.randrange(1, 40)):
                _locked_total(root)  # as good a clock as any, and one more sample
            proc.send_signal(signal.SIGKILL)
            proc.wait(HANG)
            kills += 1
    assert kills == 12

    cache = _cache(root, limit)
    records = cache.ledger.records()  # the listing settles what the killed writers left
    files, rows = _files(root), _rows(root)
    assert rows == files
    assert {r.key for r in records} == set(files)
    assert sum(files.values()) <= limit + max(files.values(), default=0)
    cache.put("cd" * 16, b"after the storm")  # and the store goes on working
    assert _rows(root) == _files(root)
    assert sum(_files(root).values()) <= limit + max(_files(root).values())


@pytest.mark.parametrize("indexed", [True, False])
def test_an_entry_this_process_holds_is_never_evicted(tmp_path: Path, indexed: bool) -> None:
    """A lazy run's stand-ins load from their entries later: the writes of the cells after
    them evict others under the limit, never those (with the index or by the files)."""
    from nbcache.store import base

    root = tmp_path / "store"
    payload = 48_000
    cache = _cache(root, limit=200_000)
    held = f"{0:032x}"
    cache.put(held, b"h" * payload, {"compute_seconds": 0.001})  # the first to go otherwise
    assert cache.store is not None
    if not indexed:  # a folder where the index's file should be: no index opens
        for path in (root / "v1").glob("index.sqlite*"):
            path.unlink()
        (root / "v1" / "index.sqlite").mkdir()
        cache = _cache(root, limit=200_000)
        assert cache.store is not None
    cache.store.hold(held)
    try:
        for n in range(1, 12):
            cache.put(f"{n:032x}", bytes([n]) * payload, {"compute_seconds": 100.0})
        assert held in _files(root) and _cache(root).lookup(held) is not None
        assert sum(_files(root).values()) <= 200_000 + payload
    finally:
        base._HELD.discard(held)
