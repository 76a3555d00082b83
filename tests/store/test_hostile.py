"""A cache folder somebody else could write: symlinks, FIFOs, stray files, forged stats
and leases.  The store never leaves its folder, never blocks, never raises into a write,
and never replaces an entry another writer published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nbcache import Cache, CacheWarning
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from nbcache.store.leases.file import HOST, FileLease
from tests.conftest import key_of

SECRET = b"hostile-tests-team-secret"


def _cache(root: Path, secret: bytes = SECRET, **options: Any) -> Cache:
    return Cache(LocalStore(root), signer=Signer(secret), **options)


def _entry(root: Path, key: str) -> Path:
    return root / "v1" / "entries" / key[:2] / key


def _caught(action: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    return result, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _within(seconds: float, action: Callable[[], Any]) -> Any:
    """Run ``action`` in a thread; fail (instead of hanging the suite) if it blocks."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(action()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    return out[0] if out else None


# -- never leaving the folder --------------------------------------------------


def test_the_sweep_never_follows_a_planted_tmp_link(tmp_path: Path) -> None:
    """A v1/tmp that is a symlink (a cloned repository can ship one) is refused, and the
    folder it points to keeps every file, however temporary its name looks."""
    root, outside = tmp_path / "store", tmp_path / "mine"
    outside.mkdir()
    victims = [outside / f"{'ab' * 8}.{HOST}.999999.0a0b0c0d.tmp", outside / "a.b.c.d.e.tmp"]
    for victim in victims:
        victim.write_text("mine")
        os.utime(victim, (0, 0))  # older than any abandoned temporary
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "tmp").symlink_to(outside)
    stored, warned = _caught(lambda: _cache(root).put(key_of(1), "value"))
    assert stored == 0 and len(warned) == 1 and "symbolic link" in warned[0], warned
    assert LocalStore(root).sweep() == 0
    assert all(victim.read_text() == "mine" for victim in victims)


def test_the_sweep_removes_only_its_own_temporaries(tmp_path: Path) -> None:
    """Old files in tmp/ that nbcache did not name (or that are links) stay."""
    store = LocalStore(tmp_path / "store")
    with store.write_entry(key_of(1)) as f:
        f.write(b"x")
    tmp = tmp_path / "store" / "v1" / "tmp"
    ours = tmp / f"{key_of(2)}.{HOST}.999999.0a0b0c0d.tmp"
    theirs = [tmp / "notes.txt", tmp / "x.y.z.1.tmp", tmp / f"{key_of(3)}.tmp"]
    for path in (ours, *theirs):
        path.write_text("old")
        os.utime(path, (0, 0))
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (tmp / f"{key_of(4)}.{HOST}.999999.0a0b0c0d.tmp").symlink_to(target)
    assert store.sweep() == 1
    assert not ours.exists() and all(path.exists() for path in theirs)
    assert target.read_text() == "keep"


def test_a_planted_shard_link_is_never_written_through(tmp_path: Path) -> None:
    """An entry shard that is a symlink to elsewhere gets no file written into it."""
    root, outside = tmp_path / "store", tmp_path / "elsewhere"
    outside.mkdir()
    _cache(root).put(key_of(1), "first")  # makes the layout
    other = "ab" * 16  # another shard than key_of(1)'s "00"
    (root / "v1" / "entries" / other[:2]).symlink_to(outside)
    stored, warned = _caught(lambda: _cache(root).put(other, "second"))
    assert stored == 0 and len(warned) == 1 and "symbolic link" in warned[0], warned
    assert list(outside.iterdir()) == []


def test_an_entry_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """A symlink at an entry's name is not followed (even to a valid entry) and is removed."""
    root = tmp_path / "store"
    cache = _cache(root)
    cache.put(key_of(1), "real")
    real = _entry(root, key_of(1))
    link = _entry(root, key_of(2))
    link.symlink_to(real)
    hit, warned = _caught(lambda: _cache(root).lookup(key_of(2)))
    assert hit is None and len(warned) == 1 and "symbolic link" in warned[0], warned
    assert not link.is_symlink() and real.exists()


def test_a_dangling_marker_link_is_not_followed(tmp_path: Path) -> None:
    """A .gitignore planted as a dangling link never creates the file it points to."""
    root, target = tmp_path / "store", tmp_path / "created-outside"
    root.mkdir()
    (root / ".gitignore").symlink_to(target)
    assert _cache(root).put(key_of(1), "v")
    assert not target.exists()


# -- never blocking --------------------------------------------------------------


def test_a_fifo_at_an_entry_is_a_miss_not_a_hang(tmp_path: Path) -> None:
    """A FIFO planted where an entry should be is refused at once and removed."""
    root = tmp_path / "store"
    _cache(root).put(key_of(1), "v")
    fifo = _entry(root, key_of(2))
    os.mkfifo(fifo)
    hit, warned = _within(10, lambda: _caught(lambda: _cache(root).lookup(key_of(2))))
    assert hit is None and len(warned) == 1 and "FIFO" in warned[0], warned
    assert not fifo.exists()


def test_fifos_at_stats_lease_and_index_do_not_hang(tmp_path: Path) -> None:
    """FIFOs at a stats file, a lease and the index: every operation still returns."""
    root = tmp_path / "store"
    cache = _cache(root)
    cache.put(key_of(1), "v")
    os.unlink(root / "v1" / "stats" / f"{key_of(1)}.json")
    os.mkfifo(root / "v1" / "stats" / f"{key_of(1)}.json")
    os.mkfifo(root / "v1" / "leases" / key_of(3))
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (root / "v1" / name).unlink(missing_ok=True)
    os.mkfifo(root / "v1" / "index.sqlite")

    def everything() -> Any:
        fresh = _cache(root)
        records = fresh.ledger.records()
        outcome = fresh.get_or_compute(key_of(3), lambda: 3)
        return records, outcome

    (records, outcome), _warned = _within(20, lambda: _caught(everything))
    assert [r.key for r in records] == [key_of(1)] and outcome.value == 3


# -- stray files and forged records ------------------------------------------------


@pytest.mark.parametrize("name", [".DS_Store", "notes.txt", "0" * 40 + ".bak"])
def test_stray_files_are_skipped_by_listing_clearing_and_eviction(
    tmp_path: Path, name: str
) -> None:
    """A file nbcache did not write, in a shard, is invisible to list, clear --all and
    eviction, and a store over its limit keeps storing (evicting its own entries)."""
    root = tmp_path / "store"
    cache = _cache(root, max_size=6000)
    cache.put(key_of(1), b"x" * 1000)
    stray = _entry(root, key_of(1)).parent / name
    stray.write_text("not an entry")
    cache.store.reindex()  # type: ignore[union-attr]
    for n in range(2, 12):
        stored, warned = _caught(lambda n=n: cache.put(key_of(n), b"y" * 1000))
        assert stored > 0 and warned == [], warned
    assert {r.key for r in cache.ledger.records()} <= {key_of(n) for n in range(1, 12)}
    assert cache.clear() > 0
    assert stray.read_text() == "not an entry"


def test_garbled_stats_change_a_listing_not_the_outcome(tmp_path: Path) -> None:
    """Stats of every wrong type list, flush and evict without an error."""
    root = tmp_path / "store"
    cache = _cache(root, max_size=10_000)
    for n in range(1, 4):
        cache.put(key_of(n), b"x" * 1000)
    store = cache.store
    assert store is not None
    garbage: list[Any] = [
        {"uses": "lots", "last_used": [], "created": {}, "compute_seconds": "nan"},
        {"uses": 1e308, "last_used": float("inf"), "pinned": "yes", "label": 5},
        {"uses": -3, "size": "big", "identity": None},
    ]
    for n, stats in enumerate(garbage, 1):
        store.write_stats(key_of(n), stats)
        path = root / "v1" / "stats" / f"{key_of(n)}.json"
        path.write_text("[" * 5000)  # unparseable on disk too
    cache.lookup(key_of(1))
    records, warned = _caught(cache.ledger.records)
    assert {r.key for r in records} == {key_of(n) for n in range(1, 4)} and warned == []
    cache.ledger.flush_uses()
    assert cache.put(key_of(9), b"y" * 8000) > 0


def test_a_forged_summary_changes_a_why_sentence_not_raises(tmp_path: Path) -> None:
    """A summary record of the wrong shape reads as no earlier entry."""
    root = tmp_path / "store"
    cache = _cache(root)
    cache.note_latest("cell:x", {"kind": "cell", "deps": {}, "args": {}})
    assert _cache(root).latest("cell:x") is not None
    from nbcache.cache.ledger import latest_key

    store = cache.store
    assert store is not None
    for forged in ({"deps": [1, 2]}, {"args": {"x": 5}}, {"deps": {"a": [1, 2]}}, "text", [1]):
        store.write_stats(latest_key("cell:x"), {"identity": "cell:x", "summary": forged})
        assert _cache(root).latest("cell:x") is None


def test_another_secret_never_replaces_the_teams_entry(tmp_path: Path) -> None:
    """A kernel with another secret keeps the team's entry byte for byte, and says once
    (not on every look) that it is left for its owner."""
    root = tmp_path / "store"
    assert _cache(root).put(key_of(1), "team's")
    before = _entry(root, key_of(1)).read_bytes()
    stranger = _cache(root, secret=b"a-different-secret-entirely")
    (first, second), warned = _caught(
        lambda: (stranger.lookup(key_of(1)), stranger.lookup(key_of(1)))
    )
    assert first is None and second is None and len(warned) == 1, warned
    stranger.put(key_of(1), "stranger's")
    assert _entry(root, key_of(1)).read_bytes() == before
    hit = _cache(root).lookup(key_of(1))
    assert hit is not None and hit.value == "team's"


# -- leases whose heartbeat lies ------------------------------------------------------


def _planted_lease(path: Path, heartbeat: float, host: str = "elsewhere") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 1, "host": host, "token": "planted"}))
    os.utime(path, (heartbeat, heartbeat))


def test_a_heartbeat_far_in_the_future_is_stale(tmp_path: Path) -> None:
    """A planted lease dated a day ahead is taken over at once, not waited for."""
    path = tmp_path / "leases" / key_of(1)
    _planted_lease(path, time.time() + 86_400)
    lease = FileLease(path, ttl=30.0)
    assert lease.acquire()
    lease.release()


def test_a_heartbeat_that_never_moves_is_stale_after_ttl(tmp_path: Path) -> None:
    """A lease a little ahead of our clock but never renewed is stale after ttl seconds of
    our own clock, and a waiter says who holds the key and how long it waits."""
    path = tmp_path / "leases" / key_of(2)
    _planted_lease(path, time.time() + 0.5)
    lease = FileLease(path, ttl=3.0)
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        while not lease.acquire():
            assert time.monotonic() - start < 10, "waited past the bound"
            time.sleep(0.1)
    lease.release()
    told = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(told) == 1 and "pid 1 on host elsewhere" in told[0] and "3 s" in told[0], told


def test_a_live_holder_is_waited_for(tmp_path: Path) -> None:
    """A lease renewed by its holder is never taken over."""
    path = tmp_path / "leases" / key_of(3)
    holder = FileLease(path, ttl=0.6)
    assert holder.acquire()
    try:
        waiter = FileLease(path, ttl=0.6)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert not waiter.acquire()
            time.sleep(0.05)
    finally:
        holder.release()


_RACE = textwrap.dedent(
    """
    import sys
    from nbcache.store import LocalStore
    store = LocalStore(sys.argv[1], fsync=False)
    with store.write_entry(sys.argv[2]) as f:
        f.write(sys.argv[3].encode() * 1000)
    """
)


def test_of_many_writers_of_one_key_the_first_entry_stays(tmp_path: Path) -> None:
    """Processes publishing the same key at once leave one whole entry, and the index
    counts it once."""
    root = tmp_path / "store"
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(root), key_of(1), str(n)])
        for n in range(8)
    ]
    assert all(proc.wait(60) == 0 for proc in procs)
    data = _entry(root, key_of(1)).read_bytes()
    assert len(data) == 1000 and len(set(data)) == 1
    store = LocalStore(root)
    assert [s.key for s in store.entries()] == [key_of(1)] and store.total_size() == 1000
    assert os.listdir(root / "v1" / "tmp") == []


def test_a_layout_that_is_a_link_is_neither_read_nor_emptied(tmp_path: Path) -> None:
    """A v1 that links to another store: nothing in it is listed, loaded or removed."""
    other, root = tmp_path / "other", tmp_path / "store"
    _cache(other).put(key_of(1), "theirs")
    root.mkdir()
    (root / "v1").symlink_to(other / "v1")
    cache = _cache(root)
    assert cache.ledger.records() == [] and cache.clear() == 0
    cache.store.remove_entry(key_of(1))  # type: ignore[union-attr]
    assert _entry(other, key_of(1)).exists()
