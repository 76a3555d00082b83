"""Writing and reading one large array: nbcache's store against np.save/np.load and joblib.

Every writer writes a fresh path (overwriting a 1 GB file is far slower than
writing a new one, because truncating it frees its page cache first).  Each
nbcache write goes through ``Cache.put`` on a ``LocalStore``; each nbcache read
goes through ``Cache.lookup`` on a fresh ``Cache``, so the value comes from the
entry file, never from the memory layer.  Reads are served from the page cache:
every file was written moments before and is read through once before timing.
A local entry's arrays are mapped copy-on-write by default; the read group also
times the copying read (``NBCACHE_MAP_ENTRIES=0``), and the fresh-process group
(:mod:`benchmarks.store_restore`) restores a ``%%cache`` cell's array in a new
process each run, as a restarted kernel does, against np.load there.
"""

from __future__ import annotations

import cProfile
import functools
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xxhash

from nbcache.cache.core import Cache
from nbcache.entry.pickling import dump_parts
from nbcache.entry.signing import MAC_SIZE, Signer, stream_digest
from nbcache.store.local import LocalStore

from .common import (
    Contender,
    Group,
    Row,
    Settings,
    Target,
    Timing,
    at_least,
    at_most,
    environ,
    measure,
    settle,
)
from .store_restore import (
    FRESH_NAMES,
    NB,
    NP,
    Restored,
    cell_entry,
    fresh_rows,
    restore_in_child,
)

__all__ = ["GROUP", "NAMES", "run"]

# A fixed secret: the benchmark never reads or creates the user's secret file.
_SECRET = b"nbcache-benchmark-secret-not-for-real-use"
_PREFIX_SIZE = 16  # see nbcache.entry.format: magic, format, flags, reserved
_TRAILER = struct.Struct(f"<Q{MAC_SIZE}s8s")  # header length, MAC, end marker

WRITE_TARGET = at_least(0.95)
READ_TARGET = at_least(0.8)
SHARE_TARGET = at_most(0.20)

GROUP_DURABLE = "write, durable (fsync)"
GROUP_CACHED = "write, no fsync"
GROUP_READ = "read (page cache)"
GROUP_INTEGRITY = "MAC + checksums"

# Row names, also what the smoke test expects to find.
NB_WRITE_FSYNC = "nbcache `Cache.put`, fsync=True (default)"
NP_SAVE_FSYNC = "np.save + fsync"
JOBLIB_DUMP_FSYNC = "joblib.dump + fsync"
NB_WRITE = "nbcache `Cache.put`, fsync=False"
NP_SAVE = "np.save"
JOBLIB_DUMP = "joblib.dump"
NB_READ = "nbcache `Cache.lookup` (fresh Cache), mapped (default)"
NB_READ_COPIED = "nbcache `Cache.lookup` (fresh Cache), copied (NBCACHE_MAP_ENTRIES=0)"
NP_LOAD = "np.load"
NP_LOAD_MMAP = 'np.load(mmap_mode="r") + full copy'
JOBLIB_LOAD = "joblib.load"
HASH_STANDALONE = "xxh3_128(array) + BLAKE2b(stream) + keyed BLAKE2b(header), standalone"
SHARE_WRITE_FSYNC = "standalone, as share of nbcache write (fsync)"
SHARE_WRITE = "standalone, as share of nbcache write (no fsync)"
SHARE_READ = "standalone, as share of nbcache read (copied)"
PATH_WRITE_FSYNC = "in nbcache's own write (fsync), profiled"
PATH_WRITE = "in nbcache's own write (no fsync), profiled"
PATH_READ = "in nbcache's own read (copied), profiled"

NAMES = (
    NB_WRITE_FSYNC,
    NP_SAVE_FSYNC,
    JOBLIB_DUMP_FSYNC,
    NB_WRITE,
    NP_SAVE,
    JOBLIB_DUMP,
    NB_READ,
    NB_READ_COPIED,
    NP_LOAD,
    NP_LOAD_MMAP,
    JOBLIB_LOAD,
    *FRESH_NAMES,
    HASH_STANDALONE,
    SHARE_WRITE_FSYNC,
    SHARE_WRITE,
    SHARE_READ,
    PATH_WRITE_FSYNC,
    PATH_WRITE,
    PATH_READ,
)


def _key(tag: int, i: int) -> str:
    return f"{tag:08x}{i:024x}"


def _sample(a: np.ndarray[Any, Any]) -> tuple[tuple[int, ...], np.ndarray[Any, Any]]:
    stride = max(1, a.size // 4096)
    return a.shape, np.array(a[::stride])


def _check(
    _i: int, result: Any, *, expected: tuple[tuple[int, ...], np.ndarray[Any, Any]], who: str
) -> None:
    """That a reader gave the array back (its shape and a strided sample)."""
    shape, sample = expected
    stride = max(1, int(np.prod(shape)) // 4096)
    if (
        not isinstance(result, np.ndarray)
        or result.shape != shape
        or not np.array_equal(result[::stride], sample)
    ):
        raise RuntimeError(f"{who} did not give the array back: the benchmark is broken")


def _warm(path: Path) -> None:
    """Read ``path`` through once so every reader starts from the page cache."""
    buffer = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass


def _entry_file(root: Path, key: str) -> Path:
    found = [p for p in root.rglob(key) if p.parent.parent.name == "entries"]
    if len(found) != 1:
        raise RuntimeError(f"cannot find the entry file of {key} under {root}")
    return found[0]


# -- hashing ------------------------------------------------------------------


def _signed_parts(path: Path) -> tuple[bytes, bytes]:
    """The prefix and JSON header of an entry file: what the MAC covers."""
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX_SIZE)
        size = f.seek(0, os.SEEK_END)
        f.seek(size - _TRAILER.size)
        header_len, _mac, _end = _TRAILER.unpack(f.read(_TRAILER.size))
        f.seek(size - _TRAILER.size - header_len)
        header = f.read(header_len)
    return prefix, header


def _integrity_work(
    view: memoryview, stream: bytes, prefix: bytes, header: bytes, signer: Signer
) -> Callable[[int], str]:
    """What a write (and, the other way round, a read) of the entry computes."""

    def work(_i: int) -> str:
        checksum = xxhash.xxh3_128(view).hexdigest()
        stream_check = stream_digest(stream)
        mac = signer.sign(prefix, header)
        return f"{checksum}{stream_check}{mac.hex()}"

    return work


def _is_hashing(name: str) -> bool:
    """Whether a cProfile entry is checksum or MAC work (xxhash, hashlib, blake2, hmac)."""
    name = name.lower()
    parts = ("xxh3", "xxhash", "sha256", "_hashlib", "hmac", "blake2")
    return any(part in name for part in parts)


def _profiled(run: Callable[[], Any]) -> tuple[float, float]:
    """(seconds spent hashing, total seconds) of one call of ``run`` under cProfile."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    result = run()
    profile.disable()
    total = time.perf_counter() - start
    del result
    hashing = 0.0
    for stat in profile.getstats():
        code = stat.code
        name = code if isinstance(code, str) else f"{code.co_filename}:{code.co_name}"
        if _is_hashing(name):
            hashing += stat.inlinetime
    return hashing, total


# -- the benchmark ------------------------------------------------------------


def run(settings: Settings) -> list[Row]:
    """Measure every writer and reader on one array of ``settings.size`` bytes.

    Files go to a ``store_io`` folder under ``settings.directory``, removed at the end.
    """
    folder = settings.directory / "store_io"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _measure(settings, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure(settings: Settings, folder: Path) -> list[Row]:
    nbytes = max(8, settings.size) // 8 * 8
    settings.say(f"store_io: making a {nbytes / 1e9:.2f} GB array")
    a = np.random.rand(nbytes // 8)
    expected = _sample(a)
    bench = _Bench(settings, folder)
    times: dict[str, Timing] = {}
    profiled: dict[str, tuple[float, float]] = {}
    bench.writes(a, times)
    bench.hashing(a, times)
    bench.profile_writes(a, profiled)
    bench.store_cell(a)
    del a
    bench.reads(expected, times, profiled)
    fresh = bench.fresh_restores()
    return _rows(times, profiled, fresh, nbytes)


_FSYNC_TAG, _PLAIN_TAG, _CELL_TAG = 1, 2, 5
# (row name, file stem, how to dump the array into an open file)
_Peers = tuple[tuple[str, str, Callable[[Any], None]], ...]


class _Bench:
    """One run's folder, store and secret, and the files it keeps for reading."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.root = folder / "nbcache"
        self.signer = Signer(_SECRET)
        last = settings.repeat - 1
        self.read_key = _key(_FSYNC_TAG, last)  # the last fsync=True entry is kept
        self.npy_path = folder / f"np_save.{last}"  # and the last plain np.save file
        self.pkl_path = folder / f"joblib_dump.{last}"  # and joblib.dump file

    def _prefault_bytes(self) -> int:
        return self.settings.size + (64 << 20) if self.settings.prefault else 0

    # -- writes: a fresh path or key every run, the previous one removed untimed

    def _nbcache_writer(self, a: Any, fsync: bool, tag: int) -> Callable[[int], bool]:
        def write(i: int) -> bool:
            cache = Cache(LocalStore(self.root, fsync=fsync), signer=self.signer)
            return bool(cache.put(_key(tag, i), a))  # False (or 0) when kept in memory only

        return write

    def _nbcache_cleanup(self, tag: int, keep_last: bool) -> Callable[[int, bool], None]:
        def after(i: int, stored: bool) -> None:
            if not stored:
                raise RuntimeError("Cache.put did not reach the store: the benchmark is broken")
            if i < self.settings.repeat - 1 or not keep_last:
                LocalStore(self.root).remove_entry(_key(tag, i))

        return after

    def _file_writer(
        self, stem: str, dump: Callable[[Any], None], fsync: bool
    ) -> tuple[Callable[[int], Path], Callable[[int, Path], None]]:
        """Write to ``stem.i``; only the last file of a no-fsync writer is kept, to be read."""

        def write(i: int) -> Path:
            path = self.folder / f"{stem}.{i}"
            with open(path, "wb") as f:
                dump(f)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            return path

        def after(i: int, path: Path) -> None:
            if fsync or i < self.settings.repeat - 1:
                path.unlink(missing_ok=True)

        return write, after

    def writes(self, a: Any, times: dict[str, Timing]) -> None:
        """nbcache, np.save and joblib.dump, durable (fsync) first, then without fsync."""

        def np_save(f: Any) -> None:
            np.save(f, a)

        def joblib_dump(f: Any) -> None:
            joblib.dump(a, f)

        durable: _Peers = (
            (NP_SAVE_FSYNC, "np_save_fsync", np_save),
            (JOBLIB_DUMP_FSYNC, "joblib_dump_fsync", joblib_dump),
        )
        self._write_group(a, True, NB_WRITE_FSYNC, durable, times)
        plain: _Peers = ((NP_SAVE, "np_save", np_save), (JOBLIB_DUMP, "joblib_dump", joblib_dump))
        self._write_group(a, False, NB_WRITE, plain, times)

    def _write_group(
        self,
        a: Any,
        fsync: bool,
        ours: str,
        peers: _Peers,
        times: dict[str, Timing],
    ) -> None:
        tag = _FSYNC_TAG if fsync else _PLAIN_TAG
        contenders = [
            Contender(ours, self._nbcache_writer(a, fsync, tag), self._nbcache_cleanup(tag, fsync))
        ]
        for name, stem, dump in peers:
            contenders.append(Contender(name, *self._file_writer(stem, dump, fsync)))
        times.update(measure(self.settings, contenders, label="store_io: "))

    # -- MAC and checksums

    def hashing(self, a: Any, times: dict[str, Timing]) -> None:
        """Standalone: the hashing a write of this entry does (and a read repeats)."""
        prefix, header = _signed_parts(_entry_file(self.root, self.read_key))
        stream = dump_parts(a).stream
        view = memoryview(a).cast("B")
        work = _integrity_work(view, stream, prefix, header, self.signer)
        contenders = [Contender(HASH_STANDALONE, work)]
        times.update(measure(self.settings, contenders, prefault_bytes=0, label="store_io: "))
        view.release()

    def profile_writes(self, a: Any, profiled: dict[str, tuple[float, float]]) -> None:
        """The same inside nbcache's real write path: one more write each, under cProfile."""
        self.settings.say("store_io: profiling nbcache writes")
        for name, fsync, tag in ((PATH_WRITE_FSYNC, True, 3), (PATH_WRITE, False, 4)):
            write = self._nbcache_writer(a, fsync, tag)
            settle(self._prefault_bytes())
            profiled[name] = _profiled(functools.partial(write, 0))
            LocalStore(self.root).remove_entry(_key(tag, 0))

    # -- reads, all from the page cache

    def _nbcache_read(self, _i: int) -> Any:
        hit = Cache(LocalStore(self.root), signer=self.signer).lookup(self.read_key)
        if hit is None or hit.source != "store":
            raise RuntimeError("Cache.lookup missed the entry: the benchmark is broken")
        return hit.value

    def _nbcache_read_copied(self, i: int) -> Any:
        with environ(NBCACHE_MAP_ENTRIES="0"):
            return self._nbcache_read(i)

    def _np_load(self, _i: int) -> Any:
        return np.load(self.npy_path)

    def _np_load_mmap_copy(self, _i: int) -> Any:
        mapped = np.load(self.npy_path, mmap_mode="r")
        copy = np.array(mapped)
        del mapped
        return copy

    def _joblib_load(self, _i: int) -> Any:
        return joblib.load(self.pkl_path)

    def reads(
        self,
        expected: tuple[tuple[int, ...], np.ndarray[Any, Any]],
        times: dict[str, Timing],
        profiled: dict[str, tuple[float, float]],
    ) -> None:
        for path in (_entry_file(self.root, self.read_key), self.npy_path, self.pkl_path):
            _warm(path)
        readers: tuple[tuple[str, Callable[[int], Any]], ...] = (
            (NB_READ, self._nbcache_read),
            (NB_READ_COPIED, self._nbcache_read_copied),
            (NP_LOAD, self._np_load),
            (NP_LOAD_MMAP, self._np_load_mmap_copy),
            (JOBLIB_LOAD, self._joblib_load),
        )
        contenders = [
            Contender(name, reader, functools.partial(_check, expected=expected, who=name))
            for name, reader in readers
        ]
        times.update(measure(self.settings, contenders, label="store_io: "))
        self.settings.say("store_io: profiling an nbcache read")
        settle(self._prefault_bytes())
        profiled[PATH_READ] = _profiled(functools.partial(self._nbcache_read_copied, 0))

    # -- restores in a fresh process each, as a restarted kernel's

    def store_cell(self, a: Any) -> None:
        """The entry a ``%%cache`` cell that made ``a`` leaves, for the fresh processes."""
        cache = Cache(LocalStore(self.root, fsync=False), signer=self.signer)
        if not cache.put(_key(_CELL_TAG, 0), cell_entry(a)):
            raise RuntimeError("Cache.put did not reach the store: the benchmark is broken")

    def fresh_restores(self) -> dict[str, Restored]:
        key = _key(_CELL_TAG, 0)
        for path in (_entry_file(self.root, key), self.npy_path):
            _warm(path)
        restored = {NB: Restored(), NP: Restored()}
        for i in range(self.settings.repeat):
            for who, into in restored.items():
                runs = f"({i + 1}/{self.settings.repeat})"
                self.settings.say(f"store_io: {who} in a fresh process {runs}")
                settle(self._prefault_bytes())
                restore_in_child(who, self.root, key, self.npy_path, into)
        return restored


def _rows(
    times: dict[str, Timing],
    profiled: dict[str, tuple[float, float]],
    fresh: dict[str, Restored],
    nbytes: int,
) -> list[Row]:
    def timed(group: str, name: str) -> Row:
        return Row(group, name, tuple(times[name].times), nbytes, cpu=tuple(times[name].cpu))

    def peer(group: str, name: str, ours: str, target: Target | None = None) -> Row:
        ratio = times[name].best / times[ours].best
        run = times[name]
        return Row(
            group, name, tuple(run.times), nbytes, ratio=ratio, target=target, cpu=tuple(run.cpu)
        )

    hashing = times[HASH_STANDALONE].best

    def share(name: str, ours: str) -> Row:
        return Row(GROUP_INTEGRITY, name, share=hashing / times[ours].best, target=SHARE_TARGET)

    def in_path(name: str) -> Row:
        spent, total = profiled[name]
        return Row(GROUP_INTEGRITY, name, (spent,), share=spent / total, target=SHARE_TARGET)

    return [
        timed(GROUP_DURABLE, NB_WRITE_FSYNC),
        peer(GROUP_DURABLE, NP_SAVE_FSYNC, NB_WRITE_FSYNC, WRITE_TARGET),
        peer(GROUP_DURABLE, JOBLIB_DUMP_FSYNC, NB_WRITE_FSYNC),
        timed(GROUP_CACHED, NB_WRITE),
        peer(GROUP_CACHED, NP_SAVE, NB_WRITE, WRITE_TARGET),
        peer(GROUP_CACHED, JOBLIB_DUMP, NB_WRITE),
        timed(GROUP_READ, NB_READ),
        peer(GROUP_READ, NB_READ_COPIED, NB_READ),
        peer(GROUP_READ, NP_LOAD, NB_READ, READ_TARGET),
        peer(GROUP_READ, NP_LOAD_MMAP, NB_READ),
        peer(GROUP_READ, JOBLIB_LOAD, NB_READ),
        *fresh_rows(fresh, nbytes),
        timed(GROUP_INTEGRITY, HASH_STANDALONE),
        share(SHARE_WRITE_FSYNC, NB_WRITE_FSYNC),
        share(SHARE_WRITE, NB_WRITE),
        share(SHARE_READ, NB_READ_COPIED),
        in_path(PATH_WRITE_FSYNC),
        in_path(PATH_WRITE),
        in_path(PATH_READ),
    ]


NOTES = (
    "Figure, on a peer's row: nbcache's speed ÷ the peer's speed, i.e. the peer's best time ÷ "
    "the best time of the nbcache row of the same group (≥ 1× means nbcache is faster). "
    "On a share row: the hashing time as a % of the nbcache time named.",
    "Like for like: `Cache.put` fsyncs by default, np.save and joblib.dump do not, and an fsync "
    "of the whole file is a large part of a durable write. So nbcache with fsync=True is "
    "compared with np.save/joblib.dump followed by `f.flush(); os.fsync(f.fileno())`, and "
    "nbcache with `LocalStore(root, fsync=False)` with plain np.save/joblib.dump.",
    "The contenders of each group take turns, run by run. "
    "Every writer writes a fresh path each run (the previous file is deleted, untimed): "
    "overwriting an existing large file is much slower than writing a new one, because "
    "truncating it first frees its page cache.",
    "nbcache's times are its whole user-facing path: `Cache.put` pickles with out-of-band "
    "buffers, writes the signed entry to `tmp/`, fsyncs (or not), renames it into place and "
    "writes its stats; `Cache.lookup` on a fresh `Cache` (so the memory layer is empty) "
    "verifies the MAC and checksums, then either maps the buffer copy-on-write, hashing it "
    "once through the map (the default for a local folder), or, copied "
    "(`NBCACHE_MAP_ENTRIES=0`), reads it into page-aligned memory; then unpickles.",
    "Reads come from the page cache, not the disk: each file was written moments before and "
    "is read through once before the timed runs. They measure the cost of the format and "
    "the copy into process memory, not the disk. np.load with mmap_mode='r' is followed by a "
    "full copy (`np.array(m)`), so every reader ends with the same in-memory array. "
    "nbcache's mapped read copies nothing: its array is the file's pages until written.",
    "Restore in a fresh process: each run is a new Python process (imports untimed) that "
    "restores the array once, as a restarted kernel restoring a `%%cache` cell's `a` does: "
    "nbcache from the cell's entry ({'vars': {'a': a}, ...}), np.load from the .npy file. "
    "Then `a.sum()` reads it all, for context: the mapped array's pages are mapped back "
    "on first use (no copy), np.load's are already there. Resident memory is the "
    "child's VmRSS after the restore minus before, the worst run ÷ the array's size.",
    "MAC + checksums, standalone: `xxhash.xxh3_128` over the whole array in memory, plus "
    "BLAKE2b-256 of the pickle stream and keyed BLAKE2b of the entry's prefix and header (the "
    "work a write does, and a read repeats to verify). Hashing a buffer that is not in the "
    "CPU cache is memory-bound, so this over-states the cost inside nbcache, which hashes "
    "each chunk next to the copy that moves it (a buffer of 16 MB or more on a second "
    "thread, while the same chunk is written).",
    "MAC + checksums, profiled: one more `Cache.put` / `Cache.lookup` under cProfile; the "
    "figure is the time inside xxhash, hashlib, blake2 and hmac calls ÷ that call's total time. "
    "The read rows time the copied read: on a mapped read the hash is nearly all the "
    "work by design (verifying is what a restore costs), so no share target applies to "
    "it. On a read the chunk is already in cache when it is hashed. On a write, cProfile sees "
    "only the calling thread: a large buffer's XXH3 runs on a second thread beside the "
    "write, so the write rows count the stream and the MAC, not the hiding hash.",
    "Before each timed run the benchmark syncs dirty pages, collects garbage and touches then "
    "frees scratch memory as large as the array (--no-prefault turns this off). On VMs with "
    "free page reporting (virtio-balloon, e.g. Firecracker), memory left free for about 2 s "
    "is handed back to the host, and the next allocation of it runs up to 10x slower; "
    "without the prefault, whichever contender first allocates after a pause pays that.",
    "Best CPU is the process's CPU time over all its threads (a fresh process's own, on "
    "those rows): on a write it includes the checksum nbcache's second thread computes, "
    "which the wall clock hides on an idle machine with a core to spare and shows on a "
    "loaded one.",
    "Ratios and shares use each contender's best run. On a VM, odd runs of any contender "
    "can still take several times longer (host memory, other guests); the median shows how "
    "noisy the run was, and --repeat 5 or more steadies the best.",
    "Targets: write ≥ 0.95× np.save (each fsync variant against its like), "
    "read ≥ 0.8× np.load, a fresh process's mapped restore ≥ 2× np.load with resident "
    "memory growing by ≤ 10 % of the array, MAC + checksums ≤ 20 % of nbcache's write "
    "and copied read times. "
    "joblib and mmap rows are shown for context, without targets.",
)

GROUP = Group(
    "store_io",
    "Writing and reading one large array",
    run,
    NOTES,
    disk_factor=5.0,
    memory_factor=4.0,
)
