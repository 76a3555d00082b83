"""The local folder store: layout, atomic writes, listings, leases, housekeeping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbcache import StoreError
from nbcache.store import LocalStore, Store, check_key
from nbcache.store.leases.file import HOST, FileLease
from tests.conftest import key_of


def test_is_a_store(store: LocalStore) -> None:
    """LocalStore implements the Store protocol."""
    assert isinstance(store, Store)


def test_nothing_is_created_until_the_first_write(store: LocalStore) -> None:
    """Reading an empty store leaves the disk untouched."""
    assert list(store.entries()) == []
    assert not store.has_entry(key_of(1))
    with pytest.raises(KeyError):
        store.open_entry(key_of(1))
    assert not store.root.exists()


def test_folder_ignores_itself(store: LocalStore) -> None:
    """The cache folder carries a .gitignore and a CACHEDIR.TAG."""
    with store.write_entry(key_of(1)) as f:
        f.write(b"data")
    assert (store.root / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (store.root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f59")


def test_write_read_list_remove(store: LocalStore) -> None:
    """Entries written whole are listed, read back and removed with their stats."""
    with store.write_entry(key_of(1)) as f:
        f.write(b"hello")
    store.write_stats(key_of(1), {"uses": 3})
    with store.open_entry(key_of(1)) as f:
        assert f.read() == b"hello"
    assert [(s.key, s.size) for s in store.entries()] == [(key_of(1), 5)]
    assert store.read_stats(key_of(1)) == {"uses": 3}
    store.remove_entry(key_of(1))
    assert list(store.entries()) == []
    assert store.read_stats(key_of(1)) is None
    store.remove_entry(key_of(1))  # removing twice is fine


def test_failed_write_leaves_nothing(store: LocalStore) -> None:
    """An exception inside the writer publishes nothing and leaves no temporary file."""
    with pytest.raises(RuntimeError), store.write_entry(key_of(2)) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert not store.has_entry(key_of(2))
    assert os.listdir(store.root / "v1" / "tmp") == []


def test_entry_invisible_until_complete(store: LocalStore) -> None:
    """While a write is in progress the key does not exist."""
    with store.write_entry(key_of(3)) as f:
        f.write(b"x" * 1000)
        assert not store.has_entry(key_of(3))
        assert list(store.entries()) == []
    assert store.has_entry(key_of(3))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABCDEF0123456789", "abc", "g" * 32, ""])
def test_keys_cannot_escape(bad: str, store: LocalStore) -> None:
    """Only lowercase hex keys are accepted, so no key can name a path outside the store."""
    with pytest.raises(StoreError, match="hex"):
        check_key(bad)
    with pytest.raises(StoreError):
        store.open_entry(bad)


def test_sweep_removes_dead_writers_files(store: LocalStore) -> None:
    """Temporary files of a dead writer go; those of a live one stay."""
    with store.write_entry(key_of(1)) as f:
        f.write(b"x")
    tmp = store.root / "v1" / "tmp"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    dead_pid = int(dead.stdout)
    (tmp / f"{key_of(5)}.{HOST}.{dead_pid}.abcd1234.tmp").write_bytes(b"half")
    live = tmp / f"{key_of(6)}.{HOST}.{os.getpid()}.abcd1234.tmp"
    live.write_bytes(b"half")
    foreign = tmp / f"{key_of(7)}.other.host.example.{dead_pid}.abcd1234.tmp"
    foreign.write_bytes(b"half")
    assert store.sweep() == 1
    assert sorted(p.name for p in tmp.iterdir()) == sorted([live.name, foreign.name])


def test_lease_is_exclusive(store: LocalStore) -> None:
    """Of two claims on one key only the first holds until it is released."""
    first, second = store.lease(key_of(1)), store.lease(key_of(1))
    assert first.acquire()
    assert not second.acquire()
    holder = second.holder()
    assert holder is not None and holder["pid"] == os.getpid() and holder["host"] == HOST
    first.release()
    assert second.holder() is None
    assert second.acquire()
    second.release()


def test_lease_heartbeat_keeps_it_fresh(tmp_path: Path) -> None:
    """A held lease's heartbeat moves its timestamp forward."""
    lease = FileLease(tmp_path / "lease", ttl=0.3)
    assert lease.acquire()
    os.utime(lease.path, (0, 0))
    try:
        for _ in range(200):
            holder = lease.holder()
            assert holder is not None
            if holder["heartbeat"] > 0:
                break
            lease._stop.wait(0.05)
        assert holder["heartbeat"] > 0
    finally:
        lease.release()
    assert not lease.path.exists()
