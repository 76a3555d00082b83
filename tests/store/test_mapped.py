"""Restoring a local entry's large arrays by mapping its file copy-on-write.

These bound the work a restore does, not its time: no copy of a large buffer (its
pages are the file's, and none is resident once it is verified), no byte written
back to the file, and a restored value that outlives its entry file. Linux only:
elsewhere entries are read into memory as before.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache.cache.core import Cache
from nbcache.entry.buffers import EntryFile
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore, Store, paths
from nbcache.store.paths import maps_safely
from nbcache.store.remote import FsspecStore
from nbcache.store.tiered import TieredStore
from tests.conftest import key_of

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not maps_safely(Path(tempfile.gettempdir())),
    reason="entries are mapped on Linux's local file systems only",
)

KEY = key_of(1)
SIZE = 8 << 20


def _array() -> np.ndarray[Any, Any]:
    return np.arange(SIZE // 8, dtype=np.float64)


def _restore(store: Store, signer: Signer, key: str = KEY) -> Any:
    """The value of ``key`` read from its entry file: a fresh Cache has nothing in memory."""
    hit = Cache(store, signer=signer).lookup(key)
    assert hit is not None and hit.source == "store"
    return hit.value


def _stored(store: LocalStore, signer: Signer, value: Any, key: str = KEY) -> Path:
    assert Cache(store, signer=signer).put(key, value)
    return store.entry_path(key)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mapping_of(path: Path) -> dict[str, int] | None:
    """This process's map of ``path`` (its smaps fields, in kB), or None if not mapped."""
    found: dict[str, int] | None = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                found = {} if len(fields) == 6 and fields[5] == str(path) else None
            elif found is not None and len(fields) == 3 and fields[2] == "kB":
                found[fields[0].rstrip(":")] = int(fields[1])
                if fields[0] == "VmFlags:":
                    break
            elif found is not None and fields[0] == "VmFlags:":
                break
    return found


def _owner(array: np.ndarray[Any, Any]) -> Any:
    """What finally holds an array's memory, following its bases."""
    base: Any = array
    while getattr(base, "base", None) is not None:
        base = base.base
    return getattr(base, "obj", base)


def test_local_entries_open_mappable(
    store: LocalStore, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local entry file opens as one whose buffers may be mapped, unless the setting says no."""
    _stored(store, signer, _array())
    with store.open_entry(KEY) as f:
        assert isinstance(f, EntryFile)
    monkeypatch.setenv("NBCACHE_MAP_ENTRIES", "0")
    with store.open_entry(KEY) as f:
        assert not isinstance(f, EntryFile)


def test_a_small_entry_opens_as_a_plain_file(store: LocalStore, signer: Signer) -> None:
    """An entry small enough to be read whole is never mapped: it opens as a plain file."""
    _stored(store, signer, np.arange(16.0))
    with store.open_entry(KEY) as f:
        assert not isinstance(f, EntryFile)


def test_a_memoized_large_result_is_mapped(tmp_path: Path, signer: Signer) -> None:
    """A stored @memoize result's large array comes back as a map of its entry file,
    as a cell's does: a first hit in a new process copies none of it."""
    from nbcache import memoize

    def rows(n: int) -> dict[str, Any]:
        return {"rows": np.arange(n, dtype=np.float64), "label": "features"}

    memoize(cache=Cache(LocalStore(tmp_path), signer=signer))(rows)(SIZE // 8)
    again = memoize(cache=Cache(LocalStore(tmp_path), signer=signer))(rows)
    value = again(SIZE // 8)
    assert again.cache_info().store_hits == 1
    assert type(_owner(value["rows"])).__name__ == "mmap"
    assert np.array_equal(value["rows"], np.arange(SIZE // 8, dtype=np.float64))


def test_a_large_buffer_is_mapped_not_copied(store: LocalStore, signer: Signer) -> None:
    """The restored array is a private map of the entry file: it owns no memory of its own,
    and once verified none of its pages stays resident in this process until it is used."""
    path = _stored(store, signer, _array())
    restored = _restore(store, signer)
    assert not restored.flags.owndata and restored.flags.writeable
    assert type(_owner(restored)).__name__ == "mmap"
    mapping = _mapping_of(path)
    assert mapping is not None, "the entry file is not mapped"
    assert mapping["Size"] >= SIZE // 1024
    assert mapping["Rss"] < SIZE // 1024 // 10  # verified through the map, then released
    assert mapping["Private_Dirty"] == 0 and mapping.get("Anonymous", 0) == 0
    assert np.array_equal(restored, _array())


def test_writing_to_a_restored_array_never_reaches_the_file(
    store: LocalStore, signer: Signer
) -> None:
    """Copy-on-write: the user's writes copy the pages they touch, and only those."""
    path = _stored(store, signer, _array())
    before = _digest(path)
    restored = _restore(store, signer)
    restored[:1024] = -1.0  # two pages
    assert restored[0] == -1.0 and restored[1024] == 1024.0
    mapping = _mapping_of(path)
    assert mapping is not None and 0 < mapping["Anonymous"] <= 64  # kB: what was written
    assert _digest(path) == before
    assert np.array_equal(_restore(store, signer), _array())


def test_copies_when_mapping_is_off(
    store: LocalStore, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NBCACHE_MAP_ENTRIES=0: the array is read into memory of its own, the file unmapped."""
    path = _stored(store, signer, _array())
    monkeypatch.setenv("NBCACHE_MAP_ENTRIES", "0")
    restored = _restore(store, signer)
    assert _mapping_of(path) is None
    assert np.array_equal(restored, _array())


def test_entry_files_are_never_rewritten_in_place(store: LocalStore, signer: Signer) -> None:
    """A write, forced or not, makes a new file and links it to the name: the file a live
    map reads keeps every byte (a file cut short under a map would fault when read)."""
    path = _stored(store, signer, _array())
    with open(path, "rb") as old:
        before = old.read()
        inode = os.fstat(old.fileno()).st_ino
        assert Cache(store, signer=signer).overwrite(KEY, np.zeros(SIZE // 8))
        assert os.stat(path).st_ino != inode
        with store.write_entry(KEY, replace=True) as f:
            f.write(b"short")
        assert os.stat(path).st_ino != inode and path.read_bytes() == b"short"
        old.seek(0)
        assert os.fstat(old.fileno()).st_size == len(before) and old.read() == before


@pytest.mark.parametrize("how", ["removed", "replaced", "evicted", "cleared", "deleted"])
def test_a_restored_value_outlives_its_entry(store: LocalStore, signer: Signer, how: str) -> None:
    """Removing, replacing, evicting or clearing the entry leaves the mapped value whole."""
    path = _stored(store, signer, _array())
    restored = _restore(store, signer)
    if how == "removed":
        store.remove_entry(KEY)
    elif how == "replaced":
        assert Cache(store, signer=signer).overwrite(KEY, np.zeros(SIZE // 8))
    elif how == "evicted":
        assert store.evict_to(0) == [KEY]
    elif how == "cleared":
        assert Cache(store, signer=signer).clear() == 1
    else:
        shutil.rmtree(store.root)
    assert _mapping_of(path) is None or how == "replaced"  # the map names a deleted file
    assert np.array_equal(restored, _array())
    restored[-1] = 0.0
    assert restored[-1] == 0.0


def _damaged(store: LocalStore, signer: Signer, damage: Any) -> None:
    path = _stored(store, signer, _array())
    data = bytearray(path.read_bytes())
    path.chmod(0o644)
    path.write_bytes(bytes(damage(data)))  # the restore below maps nothing yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Cache(store, signer=signer).lookup(KEY) is None
    assert any("removed the cached entry" in str(w.message) for w in caught), caught
    assert not store.has_entry(KEY)
    assert _mapping_of(path) is None


def _flip(data: bytearray) -> bytearray:
    data[len(data) // 2] ^= 0x01
    return data


def _buffer_cut_out(data: bytearray) -> bytearray:
    """The header and trailer kept whole, so the signature holds, with the array's bytes gone:
    the buffer the header names runs past the end of what is left."""
    tail = 1 << 16
    return data[: 2 << 20] + data[-tail:]


@pytest.mark.parametrize(
    "damage",
    [_flip, lambda d: d[: len(d) // 2], lambda d: d[:-1], _buffer_cut_out],
    ids=["bit-flip", "truncated", "trailer-cut", "buffer-cut-out"],
)
def test_a_damaged_entry_is_a_clean_miss(store: LocalStore, signer: Signer, damage: Any) -> None:
    """A flipped bit in a mapped buffer, or a file cut short, is a miss with a warning and
    the entry removed, never a fault or a wrong value."""
    _damaged(store, signer, damage)


def test_another_secret_is_a_miss(store: LocalStore, signer: Signer) -> None:
    """An entry signed with another secret is left alone and never mapped."""
    path = _stored(store, Signer(b"another-secret-of-at-least-32-bytes"), _array())
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert Cache(store, signer=signer).lookup(KEY) is None
    assert store.has_entry(KEY) and _mapping_of(path) is None


def test_network_file_systems_are_not_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the local file systems the mount table names are mapped; NFS, SMB and FUSE
    are read into memory (another host may remove a file from under a map)."""
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /home/me/shared rw - nfs4 server:/export rw\n"
        "41 22 0:51 / /mnt/my\\040drive rw - fuse.sshfs me@host: rw\n"
        "42 22 0:52 / /home/me/shared/local rw - tmpfs tmpfs rw\n"
    )
    monkeypatch.setattr(paths, "_MOUNTINFO", str(table))
    monkeypatch.setattr(paths, "_mappable", {})
    monkeypatch.setattr(os.path, "realpath", lambda p: str(p))
    assert maps_safely(Path("/home/me/work/.nbcache"))
    assert not maps_safely(Path("/home/me/shared/.nbcache"))
    assert maps_safely(Path("/home/me/sharedx/.nbcache"))
    assert not maps_safely(Path("/mnt/my drive/cache"))
    assert maps_safely(Path("/home/me/shared/local/cache"))
    table.write_text("")
    monkeypatch.setattr(paths, "_mappable", {})
    assert not maps_safely(Path("/home/me/work/.nbcache"))


def test_remote_entries_are_read_into_memory(tmp_path: Path, signer: Signer) -> None:
    """A remote store's entry is downloaded and read into memory, never mapped; a tier's
    local copy of it is a local file like any other, and is mapped."""
    remote = FsspecStore(f"memory://mapped-{secrets.token_hex(6)}")
    assert Cache(remote, signer=signer).put(KEY, _array())
    with remote.open_entry(KEY) as f:
        assert not isinstance(f, EntryFile)
    assert np.array_equal(_restore(remote, signer), _array())
    tiered = TieredStore(LocalStore(tmp_path / "tier"), remote, max_size=None)
    assert np.array_equal(_restore(tiered, signer), _array())
    with tiered.open_entry(KEY) as f:
        assert isinstance(f, EntryFile)
