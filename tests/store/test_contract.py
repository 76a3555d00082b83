"""One contract every store backend keeps: the same tests over local, fsspec (memory://
and S3 on moto), the tier, and Redis leases in front of a folder."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcache import StoreError
from nbcache.store import FsspecStore, LeasedStore, LocalStore, Store, TieredStore
from nbcache.store.leases.redis import redis_client
from tests.conftest import key_of
from tests.servers import RedisServer

BACKENDS = ["local", "memory", "s3", "tiered", "redis"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend, fresh and empty."""
    kind = request.param
    made: Store
    if kind == "local":
        made = LocalStore(tmp_path / "local")
    elif kind == "memory":
        made = FsspecStore(f"memory://contract-{secrets.token_hex(6)}")
    elif kind == "s3":
        made = FsspecStore(request.getfixturevalue("s3"))
    elif kind == "tiered":
        remote = FsspecStore(f"memory://contract-{secrets.token_hex(6)}")
        made = TieredStore(LocalStore(tmp_path / "tier"), remote, max_size=None)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = redis_client(server.url)
        client.flushall()
        made = LeasedStore(LocalStore(tmp_path / "leased"), client, ttl=30.0)
    yield made


def _write(store: Store, key: str, data: bytes, *, replace: bool = False) -> None:
    with store.write_entry(key, replace=replace) as f:
        f.write(data)


def _read(store: Store, key: str) -> bytes:
    with store.open_entry(key) as f:
        return f.read()


def test_every_backend_is_a_store(store: Store) -> None:
    """Every backend subclasses Store, so every operation is declared, none probed for."""
    assert isinstance(store, Store)
    assert isinstance(store.list_interval, float)
    store.check()


def test_write_then_read(store: Store) -> None:
    """An entry reads back byte for byte, and is there once written."""
    assert not store.has_entry(key_of(1)) and not store.probe(key_of(1))
    _write(store, key_of(1), b"one" * 1000)
    assert store.has_entry(key_of(1)) and store.probe(key_of(1))
    assert _read(store, key_of(1)) == b"one" * 1000
    target = io.BytesIO()
    store.download(key_of(1), target)
    assert target.getvalue() == b"one" * 1000


def test_absent_is_a_key_error(store: Store) -> None:
    """Reading a key never written raises KeyError, not a store error."""
    with pytest.raises(KeyError):
        store.open_entry(key_of(2))


def test_an_entry_is_never_replaced_unless_asked(store: Store) -> None:
    """A second writer of a key keeps the first entry; replace=True (a forced run) replaces."""
    _write(store, key_of(3), b"first")
    _write(store, key_of(3), b"second")
    assert _read(store, key_of(3)) == b"first"
    _write(store, key_of(3), b"forced", replace=True)
    assert _read(store, key_of(3)) == b"forced"


def test_a_failed_write_leaves_nothing(store: Store) -> None:
    """An exception inside the writer publishes nothing."""
    with pytest.raises(RuntimeError), store.write_entry(key_of(4)) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert not store.has_entry(key_of(4))
    assert [stat.key for stat in store.entries()] == []


def test_upload_from_a_file(store: Store, tmp_path: Path) -> None:
    """upload() stores a finished local file, create-if-absent like write_entry."""
    source = tmp_path / "entry.bin"
    source.write_bytes(b"uploaded")
    store.upload(key_of(5), str(source))
    source.write_bytes(b"again")
    store.upload(key_of(5), str(source))
    assert _read(store, key_of(5)) == b"uploaded"


def test_remove(store: Store) -> None:
    """remove_entry removes the entry and its stats; removing twice is no error."""
    _write(store, key_of(6), b"x")
    store.write_stats(key_of(6), {"uses": 1})
    store.remove_entry(key_of(6))
    store.remove_entry(key_of(6))
    assert not store.has_entry(key_of(6))
    assert store.read_stats(key_of(6)) is None
    assert list(store.entries()) == []


def test_listing_sizes_and_total(store: Store) -> None:
    """entries(), entries_with_stats() and total_size() agree with what was written."""
    sizes = {key_of(n): 100 * n for n in range(1, 5)}
    for key, size in sizes.items():
        _write(store, key, b"z" * size)
    assert {stat.key: stat.size for stat in store.entries()} == sizes
    assert {stat.key for stat, _ in store.entries_with_stats()} == set(sizes)
    assert store.total_size() == sum(sizes.values())
    store.remove_entry(key_of(1))
    assert store.total_size() == sum(sizes.values()) - 100
    assert store.reindex() == 3
    assert store.total_size() == sum(sizes.values()) - 100


def test_stats_round_trip_and_last_writer_wins(store: Store) -> None:
    """Stats are replaced whole; a key without an entry may keep a record too."""
    _write(store, key_of(7), b"v")
    store.write_stats(key_of(7), {"uses": 1, "label": "a"})
    store.write_stats(key_of(7), {"uses": 2})
    assert store.read_stats(key_of(7)) == {"uses": 2}
    store.write_stats(key_of(8), {"identity": "cell", "summary": {}})
    assert store.read_stats(key_of(8)) == {"identity": "cell", "summary": {}}


def test_eviction_order(store: Store) -> None:
    """Lowest value per byte first, least recently used among equals; pinned and protected
    entries never appear."""
    specs = {
        key_of(10): {"compute_seconds": 1.0, "uses": 0, "last_used": 5.0},
        key_of(11): {"compute_seconds": 1.0, "uses": 3, "last_used": 1.0},
        key_of(12): {"compute_seconds": 1.0, "uses": 0, "last_used": 2.0},
        key_of(13): {"compute_seconds": 0.0, "uses": 0, "last_used": 9.0, "pinned": True},
        key_of(14): {"compute_seconds": 0.0, "uses": 0, "last_used": 9.0},
    }
    for key, stats in specs.items():
        _write(store, key, b"q" * 1000)
        store.write_stats(key, {**stats, "size": 1000})
    order = [stat.key for stat in store.eviction_order(protect=[key_of(14)])]
    assert order == [key_of(12), key_of(10), key_of(11)]


def test_keys_cannot_escape(store: Store) -> None:
    """A name that is not a key is refused before any path is made of it."""
    for bad in ("../" + "a" * 32, "A" * 32, "abc"):
        with pytest.raises(StoreError):
            store.open_entry(bad)
        with pytest.raises(StoreError):
            store.lease(bad)


def test_leases_are_exclusive_and_released(store: Store) -> None:
    """Of two leases on one key one is taken; after release the other can take it."""
    one, two = store.lease(key_of(20)), store.lease(key_of(20))
    assert one.acquire()
    assert not two.acquire()
    holder = two.holder()
    assert holder is not None and holder.get("pid") is not None
    one.release()
    assert two.acquire()
    two.release()
    assert store.lease(key_of(20)).holder() is None


def test_each_key_has_its_own_lease(store: Store) -> None:
    """A lease on one key does not hold another."""
    one, other = store.lease(key_of(21)), store.lease(key_of(22))
    try:
        assert one.acquire() and other.acquire()
    finally:
        one.release()
        other.release()
