"""Putting and getting one large array on S3: nbcache's ``FsspecStore`` against plain s3fs.

The S3 server is moto's (``tests.servers.S3Server``), started by this group on
127.0.0.1 and stopped at the end, so the figures need no cloud account and say
nothing about a real network: they measure what each side does around the same
HTTP requests to the same local server.  Both sides send the same bytes: the
array, and for s3fs ``a.tobytes()`` made before the timing.

Each put writes a fresh key (an entry is never overwritten: putting a key that
exists is a skip) through a new ``FsspecStore`` and ``Cache``, and each get goes
through a new ``Cache`` with nothing in memory, so the value comes from the
server.  The contenders take turns after one untimed warm-up run each, and the
figures compare medians.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from nbcache.cache.core import Ask, Cache
from nbcache.entry.signing import Signer
from nbcache.errors import StoreError
from nbcache.store.remote import FsspecStore, open_fsspec

from .common import Contender, Group, Row, Settings, Timing, at_least, measure

__all__ = ["GROUP", "NAMES", "run"]

# A fixed throwaway secret: the benchmark never reads or creates the user's secret file.
_SECRET = b"bench"
_UNREMEMBERED = Ask(remember=False)  # a fresh Cache per call: its memory layer stays empty
# The array is this fraction of --size: 200 MB at the default 1 GB.
SIZE_FRACTION = 5

PUT_TARGET = at_least(0.8)
GET_TARGET = at_least(0.8)

GROUP_PUT = "put (upload)"
GROUP_GET = "get (download)"
GROUP_SETUP = "setup"

# Row names, also what the smoke test expects to find.
NB_PUT = "nbcache `Cache.put` (FsspecStore)"
S3FS_PUT = "s3fs `fs.pipe_file(path, a.tobytes())`"
NB_GET = "nbcache `Cache.lookup` (fresh Cache)"
S3FS_GET = "s3fs `fs.cat_file(path)`"
NB_CONNECT = "new `FsspecStore(url)` + one HEAD (once per session)"

NAMES = (NB_PUT, S3FS_PUT, NB_GET, S3FS_GET, NB_CONNECT)

# Where each side's objects go in the bucket.
_STORE_PREFIX = "nbcache"
_PEER_PREFIX = "s3fs"


def _new_key() -> str:
    """A fresh cache key (32 lowercase hex digits), never used before."""
    return uuid.uuid4().hex


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _server_class() -> Any:
    """``tests.servers.S3Server``, or a clear error when moto or the tests are missing."""
    try:
        import s3fs  # noqa: F401 - only checks that the s3 extra is installed

        from tests.servers import S3Server
    except ImportError as exc:
        raise RuntimeError(
            f"the s3 benchmark needs s3fs, moto[server] and the project's tests/ folder ({exc}): "
            'install the test extras (`pip install -e ".[test]"`) and run it from the '
            "project root"
        ) from exc
    return S3Server


def run(settings: Settings) -> list[Row]:
    """Start a moto S3 server, measure, and always stop it.

    The server's log goes to an ``s3`` folder under ``settings.directory``, removed at
    the end; moto keeps the objects it holds in memory and in its temporary files.
    """
    folder = settings.directory / "s3"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        settings.say("s3: starting the moto S3 server")
        server = _server_class()(folder)
        try:
            with _environment(server.env):
                return _measure(settings, f"s3://{server.new_bucket()}")
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure(settings: Settings, bucket_url: str) -> list[Row]:
    nbytes = max(8, settings.size // SIZE_FRACTION) // 8 * 8
    settings.say(f"s3: making a {nbytes / 1e6:.1f} MB array")
    a = np.random.default_rng(3).random(nbytes // 8)
    bench = _Bench(settings, bucket_url, a)
    times: dict[str, Timing] = {}
    try:
        bench.puts(times)
        bench.gets(times)
        bench.connect(times)
    finally:
        bench.close()
    return _rows(times, nbytes)


class _Bench:
    """The array, its bytes, one file system per side, and the objects made for the gets."""

    def __init__(self, settings: Settings, bucket_url: str, a: np.ndarray[Any, Any]) -> None:
        import s3fs

        self.settings = settings
        self.a = a
        self.data = a.tobytes()  # the same bytes, made outside the timing
        stride = max(1, a.size // 4096)
        self.sample = (a.shape, np.array(a[::stride]), stride)
        self.signer = Signer(_SECRET)
        self.url = f"{bucket_url}/{_STORE_PREFIX}"
        self.peer_root = f"{bucket_url.split('://', 1)[1]}/{_PEER_PREFIX}"
        # One file system (so one HTTP client and its connections) per side, kept for
        # the whole run, as a notebook session keeps its store.  Making a client is
        # timed separately (NB_CONNECT).  nbcache's is opened the way FsspecStore opens
        # its own; s3fs's with its defaults.
        self.nb_fs, _root = open_fsspec(self.url)
        self.peer_fs = s3fs.S3FileSystem(skip_instance_cache=True)
        self.read_key = _new_key()
        self.read_path = f"{self.peer_root}/{self.read_key}"
        # Scratch memory before each run: a get holds up to three copies of the array
        # (s3fs's buffer and its bytes; nbcache's map and a part in flight), and moto one
        # more.
        self.prefault = 4 * a.nbytes + (64 << 20)

    def store(self) -> FsspecStore:
        return FsspecStore(self.url, fs=self.nb_fs)

    def cache(self) -> Cache:
        return Cache(self.store(), signer=self.signer, memory_items=0)

    def _measure(self, contenders: list[Contender], times: dict[str, Timing], what: str) -> None:
        """One untimed warm-up run of each contender, then ``--repeat`` timed runs, in turns."""
        once = dataclasses.replace(self.settings, repeat=1)
        measure(once, contenders, self.prefault, label=f"s3: {what} warm-up: ")
        times.update(measure(self.settings, contenders, self.prefault, label=f"s3: {what}: "))

    # -- puts: a fresh key every run, removed afterwards (untimed)

    def _nb_put(self, _i: int) -> tuple[str, int]:
        key = _new_key()
        return key, self.cache().put(key, self.a, ask=_UNREMEMBERED)

    def _nb_put_after(self, _i: int, result: tuple[str, int]) -> None:
        key, size = result
        if size < self.a.nbytes:
            raise RuntimeError("Cache.put did not reach the store: the benchmark is broken")
        self.store().remove_entry(key)

    def _peer_put(self, _i: int) -> str:
        path = f"{self.peer_root}/{_new_key()}"
        self.peer_fs.pipe_file(path, self.data)
        return path

    def _peer_put_after(self, _i: int, path: str) -> None:
        if self.peer_fs.info(path)["size"] != len(self.data):
            raise RuntimeError("s3fs stored a different size: the benchmark is broken")
        self.peer_fs.rm_file(path)

    def puts(self, times: dict[str, Timing]) -> None:
        contenders = [
            Contender(NB_PUT, self._nb_put, self._nb_put_after),
            Contender(S3FS_PUT, self._peer_put, self._peer_put_after),
        ]
        self._measure(contenders, times, "put")

    # -- gets: one object each, put once before (untimed)

    def _check(self, value: Any, who: str) -> None:
        shape, sample, stride = self.sample
        if (
            not isinstance(value, np.ndarray)
            or value.shape != shape
            or not np.array_equal(value[::stride], sample)
        ):
            raise RuntimeError(f"{who} did not give the array back: the benchmark is broken")

    def _nb_get(self, _i: int) -> Any:
        hit = self.cache().lookup(self.read_key, _UNREMEMBERED)
        if hit is None or hit.source != "store":
            raise RuntimeError("Cache.lookup missed the entry: the benchmark is broken")
        return hit.value

    def _nb_get_after(self, _i: int, value: Any) -> None:
        self._check(value, NB_GET)

    def _peer_get(self, _i: int) -> bytes:
        data: bytes = self.peer_fs.cat_file(self.read_path)
        return data

    def _peer_get_after(self, _i: int, data: bytes) -> None:
        self._check(np.frombuffer(data, dtype=self.a.dtype).reshape(self.a.shape), S3FS_GET)

    def gets(self, times: dict[str, Timing]) -> None:
        self.settings.say("s3: putting the objects to get")
        if self.cache().put(self.read_key, self.a, ask=_UNREMEMBERED) < self.a.nbytes:
            raise RuntimeError("Cache.put did not reach the store: the benchmark is broken")
        self.peer_fs.pipe_file(self.read_path, self.data)
        contenders = [
            Contender(NB_GET, self._nb_get, self._nb_get_after),
            Contender(S3FS_GET, self._peer_get, self._peer_get_after),
        ]
        self._measure(contenders, times, "get")

    # -- what a session pays once: a new client

    def _connect(self, _i: int) -> bool:
        return FsspecStore(self.url).has_entry(self.read_key)

    def _connect_after(self, _i: int, found: bool) -> None:
        if not found:
            raise RuntimeError("a new FsspecStore did not find the entry: the benchmark is broken")

    def connect(self, times: dict[str, Timing]) -> None:
        contenders = [Contender(NB_CONNECT, self._connect, self._connect_after)]
        times.update(measure(self.settings, contenders, 0, label="s3: "))

    def close(self) -> None:
        """Remove what the gets read (the server goes away anyway; this frees its memory)."""
        for remove in (
            lambda: self.store().remove_entry(self.read_key),
            lambda: self.peer_fs.rm_file(self.read_path),
        ):
            try:
                remove()
            except (OSError, StoreError):
                pass


def _median_ratio(times: dict[str, Timing], peer: str, ours: str) -> float:
    """nbcache's speed ÷ the peer's: the peer's median time ÷ nbcache's median time."""
    return statistics.median(times[peer].times) / statistics.median(times[ours].times)


def _rows(times: dict[str, Timing], nbytes: int) -> list[Row]:
    def timed(group: str, name: str, size: int = nbytes) -> Row:
        return Row(group, name, tuple(times[name].times), size)

    def peer(group: str, name: str, ours: str, target: Any) -> Row:
        return Row(
            group,
            name,
            tuple(times[name].times),
            nbytes,
            ratio=_median_ratio(times, name, ours),
            target=target,
            versus="(medians)",
        )

    return [
        timed(GROUP_PUT, NB_PUT),
        peer(GROUP_PUT, S3FS_PUT, NB_PUT, PUT_TARGET),
        timed(GROUP_GET, NB_GET),
        peer(GROUP_GET, S3FS_GET, NB_GET, GET_TARGET),
        timed(GROUP_SETUP, NB_CONNECT, 0),
    ]


NOTES = (
    "The server is moto's S3 server (`moto_server`, from moto[server]), started by the "
    "benchmark on 127.0.0.1 for this group and stopped after it; both sides talk to it with "
    "the same credentials, in the same bucket. It is a Python process on the same machine, so "
    "the times include its own work, on the same CPUs, but no real network: they show what "
    "each side adds around the same requests, not what S3 would take. The server's CPU time "
    "counts as other processes' in the load note above.",
    "The value is a float64 array of --size ÷ 5 bytes (200 MB at the default 1 GB) from "
    "`np.random.default_rng(3).random`, not the array named above. s3fs is given "
    "`a.tobytes()`, made before the timing, so both sides upload the same bytes.",
    "Figure, on a peer's row: nbcache's speed ÷ the peer's speed, from **medians** here (the "
    "peer's median time ÷ nbcache's median time; ≥ 1× means nbcache is faster): a local HTTP "
    "server's odd runs are slower for either side, and the median is the typical run.",
    "Put: `Cache(FsspecStore(url), memory_items=0).put(key, a, ask=Ask(remember=False))` "
    "with a new store and a new key every run (putting an existing key is a skip, not an upload): "
    "pickle with the array out of band, check the key is free (HEAD), spool the signed entry "
    "(memory up to 64 MB, then a temporary file), upload it (one PUT, or a multipart upload "
    "of 50 MiB parts past 100 MiB), write its stats (a small PUT). s3fs: "
    "`fs.pipe_file(path, data)` on a fresh path, one PUT or the same multipart upload. Every "
    "object is deleted after its run, untimed.",
    "Get: `Cache(FsspecStore(url), memory_items=0).lookup(key, Ask(remember=False))` on a new "
    "Cache, so nothing is in memory: one GET, then (past 50 MiB) concurrent ranged GETs "
    "pinned to its ETag, straight into page-aligned memory; check the MAC and checksums in "
    "place, unpickle with the arrays on that memory. s3fs: `fs.cat_file(path)` of the same "
    "bytes, which ends with the bytes, not an array (a zero-copy `np.frombuffer` away).",
    "Each side keeps one file system (one HTTP client and its connections) for all its runs, "
    "as a session keeps its store: each run builds a new `FsspecStore(url, fs=...)` on "
    "nbcache's. The setup row is what a store opened from its URL costs once per session "
    "(a new client and one HEAD), without a target.",
    "Fairness: one untimed warm-up run of each contender, then the contenders take turns, "
    "run by run, with memory settled (sync, garbage collection, prefault) before each run.",
    "Targets: put and get ≥ 0.8× s3fs, on medians.",
)

GROUP = Group(
    "s3",
    "Putting and getting one large array on S3 (a local moto server)",
    run,
    NOTES,
    disk_factor=1.0,
    memory_factor=2.0,
)
