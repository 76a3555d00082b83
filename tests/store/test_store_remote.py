"""fsspec stores against a real S3 server on 127.0.0.1 (moto), and ``memory://``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from nbcache.cache.core import Cache
from nbcache.cache.default import open_store
from nbcache.entry.signing import Signer
from nbcache.errors import StoreError
from nbcache.settings import tier_location
from nbcache.store import FsspecStore, LeasedStore, LocalStore, TieredStore
from nbcache.store import remote as remote_module
from nbcache.store.leases.object import ObjectLease
from tests.conftest import key_of
from tests.servers import S3Server

KEY = key_of(1)


def _objects(store: FsspecStore) -> list[str]:
    store.fs.invalidate_cache()
    return sorted(store.fs.find(store.location.split("://", 1)[1]))


# -- the store protocol ----------------------------------------------------------------


def test_an_entry_round_trips_and_lists(s3: str) -> None:
    store = FsspecStore(s3)
    assert not store.has_entry(KEY)
    with pytest.raises(KeyError):
        store.open_entry(KEY)
    with store.write_entry(KEY) as f:
        f.write(b"a" * 1000)
        f.write(b"b" * 24)
    assert store.has_entry(KEY)
    assert store.open_entry(KEY).read() == b"a" * 1000 + b"b" * 24
    [stat] = list(store.entries())
    assert (stat.key, stat.size) == (KEY, 1024)
    assert abs(stat.mtime - time.time()) < 120
    store.write_stats(KEY, {"uses": 3})
    assert store.read_stats(KEY) == {"uses": 3}
    store.remove_entry(KEY)
    assert not store.has_entry(KEY)
    assert store.read_stats(KEY) is None
    assert list(store.entries()) == []
    store.remove_entry(KEY)  # absent: a no-op


def test_a_failed_write_leaves_no_object_and_no_spool(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_module, "_SPOOL_IN_MEMORY", 1 << 20)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    store = FsspecStore(s3)
    with pytest.raises(RuntimeError, match="the body failed"), store.write_entry(KEY) as f:
        f.write(b"x" * (3 << 20))  # past the memory spool: a temporary file
        assert list(tmp_path.glob("nbcache-upload-*"))
        raise RuntimeError("the body failed")
    assert not store.has_entry(KEY)
    assert _objects(store) == []
    assert not list(tmp_path.glob("nbcache-upload-*"))


def test_a_big_entry_goes_up_from_a_spool_file(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_module, "_SPOOL_IN_MEMORY", 1 << 20)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    store = FsspecStore(s3)
    payload = os.urandom(3 << 20)
    with store.write_entry(KEY) as f:
        for start in range(0, len(payload), 1 << 18):
            f.write(payload[start : start + (1 << 18)])
    assert store.open_entry(KEY).read() == payload
    assert not list(tmp_path.glob("nbcache-upload-*"))


def test_an_entry_is_never_overwritten(s3: str) -> None:
    first, second = FsspecStore(s3), FsspecStore(s3)
    with first.write_entry(KEY) as f:
        f.write(b"first")
    with second.write_entry(KEY) as f:
        f.write(b"second")
    assert first.open_entry(KEY).read() == b"first"


def test_listings_are_never_cached(s3: str) -> None:
    reader, writer = FsspecStore(s3), FsspecStore(s3)
    with writer.write_entry(key_of(1)) as f:
        f.write(b"1")
    assert [s.key for s in reader.entries()] == [key_of(1)]
    with writer.write_entry(key_of(2)) as f:
        f.write(b"2")
    assert sorted(s.key for s in reader.entries()) == [key_of(1), key_of(2)]
    assert reader.has_entry(key_of(2))


def test_memory_urls_work_too() -> None:
    store = FsspecStore(f"memory://nbcache-test-{os.getpid()}-{time.time_ns()}")
    with store.write_entry(KEY) as f:
        f.write(b"in memory")
    assert store.open_entry(KEY).read() == b"in memory"
    assert [s.key for s in store.entries()] == [KEY]
    one, two = store.lease(KEY), store.lease(KEY)
    assert one.acquire() and not two.acquire()
    one.release()
    assert two.acquire()
    two.release()


def test_a_bad_url_says_what_to_do() -> None:
    with pytest.raises(StoreError, match=r"nbcache\[s3\]|Check the URL|unknown protocol"):
        FsspecStore("nosuchprotocol-xyz://bucket/prefix")


def test_an_unreachable_server_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    store = FsspecStore("s3://nowhere/cache", config_kwargs={"retries": {"max_attempts": 1}})
    store.fs.retries = 1
    with pytest.raises(StoreError, match="credentials and the network"):
        store.open_entry(KEY)
    assert not store.has_entry(KEY)


# -- the cache on S3 -------------------------------------------------------------------


def test_a_second_cache_on_the_same_bucket_hits(s3: str) -> None:
    Cache(FsspecStore(s3), signer=Signer(b"team")).put(KEY, {"answer": 42})
    hit = Cache(FsspecStore(s3), signer=Signer(b"team")).lookup(KEY)
    assert hit is not None and hit.value == {"answer": 42} and hit.source == "store"


def test_another_secret_is_refused_but_left_for_its_owner(s3: str) -> None:
    Cache(FsspecStore(s3), signer=Signer(b"alice")).put(KEY, 1)
    bob = Cache(FsspecStore(s3), signer=Signer(b"bob"))
    with pytest.warns(UserWarning, match="another secret.* NBCACHE_SECRET"):
        assert bob.lookup(KEY) is None
    assert bob.store.has_entry(KEY)  # type: ignore[union-attr]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per entry, not one per look
        assert bob.get_or_compute(KEY, lambda: 2).value == 2
    hit = Cache(FsspecStore(s3), signer=Signer(b"alice")).lookup(KEY)
    assert hit is not None and hit.value == 1


def test_a_tampered_object_is_refused_removed_and_recomputed(s3: str, s3_server: S3Server) -> None:
    import numpy as np

    cache = Cache(FsspecStore(s3), signer=Signer(b"team"))
    cache.put(KEY, np.arange(1 << 18))
    bucket, prefix = s3.removeprefix("s3://").split("/", 1)
    name = f"{prefix}/v1/entries/{KEY[:2]}/{KEY}"
    client = s3_server.client()
    body = bytearray(client.get_object(Bucket=bucket, Key=name)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=name, Body=bytes(body))
    other = Cache(FsspecStore(s3), signer=Signer(b"team"))
    with pytest.warns(UserWarning, match="damaged"):
        assert other.lookup(KEY) is None
    assert not other.store.has_entry(KEY)  # type: ignore[union-attr]
    made = other.get_or_compute(KEY, lambda: np.arange(3))
    assert made.value.tolist() == [0, 1, 2]


# -- the object-store lease ------------------------------------------------------------


def test_one_of_two_takes_the_lease_and_the_other_after_release(s3: str) -> None:
    store = FsspecStore(s3)
    one, two = store.lease(KEY), store.lease(KEY)
    assert one.acquire()
    assert not two.acquire()
    holder = two.holder()
    assert holder is not None and holder["pid"] == os.getpid()
    one.release()
    assert one.holder() is None
    assert two.acquire()
    two.release()


def test_a_heartbeat_keeps_the_lease_past_its_ttl(s3: str) -> None:
    store = FsspecStore(s3, ttl=1.2)
    one, two = store.lease(KEY), store.lease(KEY)
    assert one.acquire()
    time.sleep(2.0)
    assert not two.acquire()
    one.release()


def test_a_dead_holders_lease_is_taken_over(s3: str) -> None:
    store = FsspecStore(s3)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    lease = store.lease(KEY)
    body = json.dumps(
        {"pid": int(dead.stdout), "host": os.uname().nodename, "token": "x", "beat": time.time()}
    )
    bucket, path, _ = store.fs.split_path(lease.path)
    store.fs.call_s3("put_object", Bucket=bucket, Key=path, Body=body.encode())
    assert lease.acquire()
    assert lease.holder()["pid"] == os.getpid()  # type: ignore[index]
    lease.release()


def test_a_late_breaker_never_removes_a_fresh_lease(s3: str) -> None:
    store = FsspecStore(s3, ttl=0.5)
    first = store.lease(KEY)
    assert first.acquire()
    stale_view = first.holder()
    first._stop.set()  # a holder that stops beating, then comes back with a new lease
    time.sleep(0.7)
    first.release()
    fresh = store.lease(KEY)
    assert fresh.acquire()
    late = store.lease(KEY)
    assert isinstance(late, ObjectLease)
    late._break(stale_view)  # judged stale before the fresh one was taken
    assert fresh.holder() is not None and not store.lease(KEY).acquire()
    fresh.release()


# -- the local tier --------------------------------------------------------------------


class _Counting(FsspecStore):
    downloads = 0

    def download(self, key: str, target: Any) -> None:
        type(self).downloads += 1
        super().download(key, target)


def test_the_tier_fetches_once_per_machine(s3: str, tmp_path: Path) -> None:
    remote = _Counting(s3)
    Cache(FsspecStore(s3), signer=Signer(b"t")).put(KEY, list(range(1000)))
    for _ in range(3):  # three "kernels" on one machine
        tiered = TieredStore(LocalStore(tmp_path / "tier"), remote)
        assert Cache(tiered, signer=Signer(b"t")).lookup(KEY).value == list(range(1000))  # type: ignore[union-attr]
    assert _Counting.downloads == 1
    assert (tmp_path / "tier").exists() and LocalStore(tmp_path / "tier").has_entry(KEY)


def test_a_write_through_the_tier_lands_in_both(s3: str, tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "tier")
    Cache(TieredStore(local, FsspecStore(s3)), signer=Signer(b"t")).put(KEY, "v")
    assert local.has_entry(KEY) and FsspecStore(s3).has_entry(KEY)


def test_a_clear_elsewhere_clears_every_tier(s3: str, tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "tier")
    Cache(TieredStore(local, FsspecStore(s3)), signer=Signer(b"t")).put(KEY, "v")
    FsspecStore(s3).remove_entry(KEY)  # another machine: %nbcache clear
    assert Cache(TieredStore(local, FsspecStore(s3)), signer=Signer(b"t")).lookup(KEY) is None
    assert not local.has_entry(KEY)


def test_the_tier_keeps_under_its_size(s3: str, tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "tier")
    tiered = TieredStore(local, FsspecStore(s3), max_size=2500)
    for n in range(4):
        with tiered.write_entry(key_of(n)) as f:
            f.write(bytes(1000))
        time.sleep(0.01)
    assert sorted(s.key for s in local.entries()) == [key_of(2), key_of(3)]
    assert len(list(tiered.entries())) == 4


# -- configuration ---------------------------------------------------------------------


def test_open_store_puts_a_tier_in_front_by_default(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(s3)
    assert isinstance(store, TieredStore) and store.location == s3
    expected = tier_location(s3)
    assert expected is not None and str(tmp_path / "xdg-cache") in str(expected)
    assert store.local.location == str(expected)
    monkeypatch.setenv("NBCACHE_TIER", "off")
    assert isinstance(open_store(s3), FsspecStore)
    monkeypatch.setenv("NBCACHE_TIER", str(tmp_path / "mine"))
    assert str(tmp_path / "mine") in open_store(s3).local.location  # type: ignore[attr-defined]


def test_a_missing_fsspec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(StoreError, match=r'pip install "nbcache\[s3\]"'):
        open_store("s3://bucket/prefix")


def test_a_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setenv("NBCACHE_LOCK_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(StoreError, match=r'pip install "nbcache\[redis\]"'):
        open_store(str(tmp_path / "store"))


def test_the_lock_url_wraps_any_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NBCACHE_LOCK_URL", "redis://127.0.0.1:1/0")
    store = open_store(str(tmp_path / "store"))
    assert isinstance(store, LeasedStore) and isinstance(store.store, LocalStore)


# -- across processes ------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from nbcache.cache.core import Cache
    from nbcache.entry.signing import Signer
    from nbcache.store import FsspecStore
    import s3fs.core

    calls = 0
    original = s3fs.core.S3FileSystem._call_s3

    async def slow_parts(self, method, *args, **kwargs):
        global calls
        if method == "upload_part":
            calls += 1
            if calls > 1:
                print("uploading", flush=True)
                time.sleep(60)  # killed here, with part of the entry uploaded
        return await original(self, method, *args, **kwargs)

    s3fs.core.S3FileSystem._call_s3 = slow_parts
    Cache(FsspecStore(sys.argv[1]), signer=Signer(b"t")).put(sys.argv[2], np.ones(40 << 20))
    print("stored", flush=True)
    """
)


def test_a_writer_killed_mid_upload_leaves_no_entry(
    s3: str, s3_server: S3Server, tmp_path: Path
) -> None:
    env = {**os.environ, **s3_server.env, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, s3, KEY], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "uploading"
        bucket = s3.removeprefix("s3://").split("/", 1)[0]
        uploads = s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert uploads, "the writer should be half-way through a multipart upload"
    finally:
        proc.kill()
        proc.wait(10)
    store = FsspecStore(s3)
    assert not store.has_entry(KEY)
    assert list(store.entries()) == []
    assert Cache(store, signer=Signer(b"t")).lookup(KEY) is None
    # Its spool file is left behind, and swept by the next writer on this machine.
    assert len(list(tmp_path.glob("nbcache-upload-*"))) == 1
    assert remote_module.sweep_spools(str(tmp_path)) == 1
    assert not list(tmp_path.glob("nbcache-upload-*"))


def test_dir_refuses_a_missing_bucket_and_takes_a_real_one(s3: str) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "nbcache")
        with pytest.raises(UsageError, match=r"does not exist\. Create it"):
            shell.run_line_magic("nbcache", "dir s3://no-such-bucket-here/cache")
        shell.run_line_magic("nbcache", f"dir {s3}")
        shell.run_cell_magic("cache", "", "shared = 41 + 1\n")
        assert FsspecStore(s3).entries().__next__().size > 0
        shell.run_line_magic("unload_ext", "nbcache")
    finally:
        InteractiveShell.clear_instance()


def test_a_bucket_is_listed_once_a_minute_not_on_every_write(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FsspecStore(s3)
    listings = []
    real = store.entries

    def counted() -> Any:
        listings.append(1)
        return real()

    monkeypatch.setattr(store, "entries", counted)
    cache = Cache(store, signer=Signer(b"t"), max_size=20_000)
    for n in range(10):
        cache.put(key_of(n), bytes(500 + n))  # about 1.1 kB stored each
    assert len(listings) == 1  # the first write lists; later ones add to the estimate
    for n in range(10, 40):
        cache.put(key_of(n), bytes(500 + n))  # past 20 kB: list, evict to 18 kB, go on
    assert len(listings) <= 20  # every write would list twice without the estimate
    assert sum(stat.size for stat in real()) <= 20_000


def test_the_tier_serves_its_copy_while_the_bucket_is_unreachable(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalStore(tmp_path / "tier")
    remote = FsspecStore(s3)
    Cache(TieredStore(local, remote), signer=Signer(b"t")).put(KEY, "kept")

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(remote.fs, "exists", down)
    monkeypatch.setattr(remote.fs, "cat_file", down)
    tiered = TieredStore(local, remote)
    hit = Cache(tiered, signer=Signer(b"t")).lookup(KEY)
    assert hit is not None and hit.value == "kept"
    assert local.has_entry(KEY)  # a network blip never drops the copy
    with pytest.warns(UserWarning, match="cannot read the store.*Connection refused"):
        assert Cache(tiered, signer=Signer(b"t")).lookup(key_of(99)) is None


def test_a_big_entry_comes_down_in_parts_into_writable_arrays(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    monkeypatch.setattr(remote_module, "_PART", 1 << 20)
    value = {"a": np.arange(3 << 18, dtype=np.float64), "b": np.ones(5000)}  # 6 MB and 40 kB
    Cache(FsspecStore(s3), signer=Signer(b"t")).put(KEY, value)
    store = FsspecStore(s3)
    ranges = []
    real = store.fs._call_s3

    async def counted(method: str, *args: Any, **kwargs: Any) -> Any:
        ranges.append(kwargs.get("Range"))
        return await real(method, *args, **kwargs)

    monkeypatch.setattr(store.fs, "_call_s3", counted)
    hit = Cache(store, signer=Signer(b"t")).lookup(KEY)
    assert hit is not None
    assert len(ranges) == 7 and ranges[0] == "bytes=0-1048575"  # 6 MB and a bit: 7 parts
    assert np.array_equal(hit.value["a"], value["a"]) and hit.value["a"].flags.writeable
    hit.value["a"][0] = -1.0
    assert np.array_equal(hit.value["b"], value["b"])


def test_an_object_rewritten_during_a_download_is_a_miss_not_a_mix(
    s3: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    monkeypatch.setattr(remote_module, "_PART", 1 << 20)
    Cache(FsspecStore(s3), signer=Signer(b"t")).put(KEY, np.zeros(1 << 19))
    store = FsspecStore(s3)
    bucket, prefix = s3.removeprefix("s3://").split("/", 1)
    real = store.fs._call_s3
    rewritten = []

    async def rewrite_after_first(method: str, *args: Any, **kwargs: Any) -> Any:
        reply = await real(method, *args, **kwargs)
        if not rewritten:
            rewritten.append(True)
            other = Cache(FsspecStore(f"memory://{KEY}"), signer=Signer(b"t"))
            other.put(KEY, np.ones(1 << 19))
            body = other.store.open_entry(KEY).read()  # type: ignore[union-attr]
            name = f"{prefix}/v1/entries/{KEY[:2]}/{KEY}"
            s3_server.client().put_object(Bucket=bucket, Key=name, Body=body)
        return reply

    monkeypatch.setattr(store.fs, "_call_s3", rewrite_after_first)
    with pytest.warns(UserWarning, match="cannot read the store"):
        assert Cache(store, signer=Signer(b"t")).lookup(KEY) is None


def test_a_server_without_conditional_deletes_still_releases(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some S3-compatible servers refuse If-Match on DELETE: release compares tokens."""
    store = FsspecStore(s3)
    lease = store.lease(KEY)
    assert lease.acquire()
    real = store.fs.call_s3

    def no_conditional_delete(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "delete_object" and "IfMatch" in kwargs:
            raise OSError(
                5,
                "NotImplemented: a header you provided is not implemented",
            )
        return real(method, *args, **kwargs)

    monkeypatch.setattr(store.fs, "call_s3", no_conditional_delete)
    lease.release()
    assert lease.holder() is None
    again = store.lease(KEY)
    assert again.acquire()
    again.release()


_HITTER = textwrap.dedent(
    """
    import sys
    from nbcache.cache.core import Cache
    from nbcache.entry.signing import Signer
    from nbcache.store import FsspecStore

    cache = Cache(FsspecStore(sys.argv[1]), signer=Signer(b"t"))
    print(cache.lookup(sys.argv[2]).value, flush=True)
    """
)


def test_a_process_counts_its_hits_on_the_bucket_as_it_exits(s3: str, s3_server: S3Server) -> None:
    """Uses are flushed at exit, before the thread pools an S3 client needs shut down."""
    Cache(FsspecStore(s3), signer=Signer(b"t")).put(KEY, "v")
    env = {**os.environ, **s3_server.env}
    done = subprocess.run(
        [sys.executable, "-c", _HITTER, s3, KEY], env=env, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "v\n", "")
    assert FsspecStore(s3).read_stats(KEY)["uses"] == 1  # type: ignore[index]
