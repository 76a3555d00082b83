"""The local store's index: kept by every write and removal, read by listings and
eviction instead of a walk of the folder, rebuilt from the files when missing or damaged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nbcache import Cache
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from tests.conftest import key_of


def _fill(store: LocalStore, count: int, size: int = 100) -> None:
    for n in range(count):
        with store.write_entry(key_of(n)) as f:
            f.write(b"e" * size)
        store.write_stats(key_of(n), {"uses": n, "size": size, "compute_seconds": 1.0})


def test_a_listing_never_walks_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """entries(), total_size() and eviction_order() answer from the index: the shard folders
    are looked at (one lstat each), and none is listed unless it changed behind the
    index's back."""
    store = LocalStore(tmp_path / "store")
    _fill(store, 20)
    fresh = LocalStore(tmp_path / "store")
    fresh.total_size()  # opens the index once
    list(fresh.entries())  # a new index agrees with each shard once
    real_scandir = os.scandir
    entries = tmp_path / "store" / "v1" / "entries"

    def walked(path: Any = ".") -> Any:
        if isinstance(path, (str, os.PathLike)) and Path(path).parent == entries:
            raise AssertionError(f"the shard {path} was listed")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", walked)
    for n in range(20, 30):  # written through the index: no shard to list again
        with fresh.write_entry(key_of(n)) as f:
            f.write(b"e" * 100)
    fresh.remove_entry(key_of(25))
    assert len(list(fresh.entries())) == 29
    assert fresh.total_size() == 2900
    assert next(iter(fresh.eviction_order())).key == key_of(20)  # no stats: ranks lowest


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "fifo", "link"])
def test_a_missing_or_damaged_index_is_rebuilt_from_the_files(tmp_path: Path, damage: str) -> None:
    """Whatever became of the index file, the next store rebuilds it, stats included."""
    root = tmp_path / "store"
    _fill(LocalStore(root), 5)
    index = root / "v1" / "index.sqlite"
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (root / "v1" / name).unlink(missing_ok=True)
    if damage == "missing":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"not a database at all" * 100)
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:1000])
    elif damage == "fifo":
        index.unlink()
        os.mkfifo(index)
    else:
        index.unlink()
        (tmp_path / "elsewhere.sqlite").write_bytes(b"")
        index.symlink_to(tmp_path / "elsewhere.sqlite")
    store = LocalStore(root)
    assert {s.key for s in store.entries()} == {key_of(n) for n in range(5)}
    assert store.total_size() == 500
    stats = store.read_stats(key_of(3))
    assert stats is not None and stats["uses"] == 3
    assert index.is_file() and not index.is_symlink()
    if damage == "link":
        assert (tmp_path / "elsewhere.sqlite").read_bytes() == b""  # never written through


def test_a_store_made_before_the_index_is_indexed_on_first_use(tmp_path: Path) -> None:
    """Entries and stats files written by an nbcache without an index are all counted."""
    root = tmp_path / "store"
    cache = Cache(LocalStore(root), signer=Signer(b"index-tests-secret"))
    for n in range(3):
        cache.put(key_of(n), n, {"compute_seconds": 2.0, "label": f"cell {n}"})
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (root / "v1" / name).unlink(missing_ok=True)
    records = Cache(LocalStore(root), signer=Signer(b"index-tests-secret")).ledger.records()
    assert sorted(r.label for r in records) == ["cell 0", "cell 1", "cell 2"]


def test_removal_and_reindex_keep_the_total(tmp_path: Path) -> None:
    """A removal drops its row; reindex() after files vanished behind its back agrees."""
    store = LocalStore(tmp_path / "store")
    _fill(store, 10)
    store.remove_entry(key_of(0))
    assert store.total_size() == 900
    os.unlink(store.entry_path(key_of(1)))  # removed by hand
    assert store.reindex() == 8
    assert store.total_size() == 800


_WRITER = textwrap.dedent(
    """
    import sys
    from nbcache.store import LocalStore
    store = LocalStore(sys.argv[1], fsync=False)
    start = int(sys.argv[2])
    for n in range(start, start + 50):
        with store.write_entry(f"{n:032x}") as f:
            f.write(b"w" * 10)
        store.write_stats(f"{n:032x}", {"uses": 1, "size": 10})
    """
)


def test_many_processes_share_one_index(tmp_path: Path) -> None:
    """Six processes writing at once: every entry is indexed once, the total is exact."""
    root = tmp_path / "store"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(n * 50)]) for n in range(6)
    ]
    assert all(proc.wait(120) == 0 for proc in procs)
    store = LocalStore(root)
    assert len(list(store.entries())) == 300 and store.total_size() == 3000
    assert store.reindex() == 300 and store.total_size() == 3000


def test_the_tier_trims_the_copy_read_least_recently(tmp_path: Path) -> None:
    """The tier's folder drops the copy read longest ago, found through its index."""
    import secrets

    from nbcache.store import FsspecStore, TieredStore

    local = LocalStore(tmp_path / "tier")
    tiered = TieredStore(local, FsspecStore(f"memory://tier-{secrets.token_hex(4)}"), 3500)
    for n in range(3):
        with tiered.write_entry(key_of(n)) as f:
            f.write(bytes(1000))
    with tiered.open_entry(key_of(0)) as f:  # read: now the most recent
        f.read()
    with tiered.write_entry(key_of(3)) as f:
        f.write(bytes(1000))
    assert sorted(s.key for s in local.entries()) == [key_of(0), key_of(2), key_of(3)]


def test_an_index_of_another_layout_is_rebuilt(tmp_path: Path) -> None:
    """An index whose layout version is not this nbcache's is dropped and rebuilt."""
    import sqlite3

    root = tmp_path / "store"
    _fill(LocalStore(root), 4)
    db = sqlite3.connect(root / "v1" / "index.sqlite")
    db.execute("DROP TABLE entries")
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, size INTEGER, mtime REAL)")
    db.execute("UPDATE meta SET value = '1' WHERE name = 'version'")
    db.commit()
    db.close()
    store = LocalStore(root)
    assert len(list(store.entries_with_stats())) == 4 and store.total_size() == 400


def test_an_index_damaged_while_open_is_rebuilt(tmp_path: Path) -> None:
    """An index file overwritten under an open store: the write that finds it damaged
    still stores its entry, and the next one rebuilds the index from the files."""
    root = tmp_path / "store"
    store = LocalStore(root)
    _fill(store, 3)
    index = root / "v1" / "index.sqlite"
    size = index.stat().st_size
    with open(index, "r+b") as f:  # the same file, so the open connection reads garbage
        f.write(b"\xff" * size)
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        with open(root / "v1" / name, "r+b") as f:
            f.write(b"\xff" * (root / "v1" / name).stat().st_size)
    for n in (3, 4):
        with store.write_entry(key_of(n)) as f:
            f.write(b"e" * 100)
    assert store.has_entry(key_of(3)) and store.has_entry(key_of(4))
    assert {s.key for s in store.entries()} == {key_of(n) for n in range(5)}
    assert store.total_size() == 500
    assert store.index.has(key_of(4))  # answered by a rebuilt index, not by a walk
