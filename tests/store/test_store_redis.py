"""Leases in a real Redis server (Debian's redis-server on a unix socket)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbcache.cache.default import open_store
from nbcache.errors import StoreError
from nbcache.store import LeasedStore, LocalStore
from nbcache.store.leases.file import HOST
from nbcache.store.leases.redis import RedisLease, redis_client
from tests.conftest import key_of
from tests.servers import RedisServer

KEY = key_of(7)


@pytest.fixture
def leased(redis_server: RedisServer, tmp_path: Path) -> LeasedStore:
    client = redis_client(redis_server.url)
    client.flushall()
    return LeasedStore(LocalStore(tmp_path / "store"), client, ttl=30.0)


def test_one_of_two_takes_the_lease_and_the_other_after_release(leased: LeasedStore) -> None:
    one, two = leased.lease(KEY), leased.lease(KEY)
    assert isinstance(one, RedisLease)
    assert one.acquire() and one.acquire()  # taking it again is a no-op
    assert not two.acquire()
    holder = two.holder()
    assert holder is not None and holder["pid"] == os.getpid() and holder["host"] == HOST
    one.release()
    assert two.holder() is None
    assert two.acquire()
    two.release()
    one.release()  # not ours any more: a no-op


def test_leases_of_two_stores_do_not_collide(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis_client(redis_server.url)
    a = LeasedStore(LocalStore(tmp_path / "a"), client)
    b = LeasedStore(LocalStore(tmp_path / "b"), client)
    first, second = a.lease(KEY), b.lease(KEY)
    assert first.acquire() and second.acquire()
    first.release()
    second.release()


def test_a_heartbeat_keeps_the_lease_past_its_ttl(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = LeasedStore(LocalStore(tmp_path / "s"), redis_client(redis_server.url), ttl=1.0)
    one, two = store.lease(KEY), store.lease(KEY)
    assert one.acquire()
    time.sleep(2.0)
    assert not two.acquire()
    one.release()
    assert two.acquire()
    two.release()


def test_a_lease_without_heartbeat_expires(redis_server: RedisServer, tmp_path: Path) -> None:
    store = LeasedStore(LocalStore(tmp_path / "s"), redis_client(redis_server.url), ttl=0.5)
    one = store.lease(KEY)
    assert one.acquire()
    one._stop.set()  # the holder hangs: no more heartbeats
    time.sleep(0.9)
    two = store.lease(KEY)
    assert two.acquire()
    two.release()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(leased: LeasedStore) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE
    )
    lease = leased.lease(KEY)
    assert isinstance(lease, RedisLease)
    leased.client.set(lease.name, b"their-token", px=30_000)
    record = {"pid": int(dead.stdout), "host": HOST, "token": "their-token"}
    leased.client.set(f"{lease.name}:holder", json.dumps(record), px=30_000)
    assert lease.acquire()
    assert lease.holder()["pid"] == os.getpid()  # type: ignore[index]
    lease.release()


def test_an_unreachable_server_is_a_store_error(tmp_path: Path) -> None:
    store = LeasedStore(LocalStore(tmp_path / "s"), redis_client(f"unix://{tmp_path}/no.sock"))
    with pytest.raises(StoreError, match="NBCACHE_LOCK_URL"):
        store.lease(KEY).acquire()


def test_a_bad_url_says_what_to_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCACHE_LOCK_URL", "http://example.org")
    with pytest.raises(StoreError, match="redis://host:port"):
        open_store(str(tmp_path / "s"))


_RACER = textwrap.dedent(
    """
    import sys, time
    from nbcache.cache.core import Cache
    from nbcache.cache.default import open_store
    from nbcache.entry.signing import Signer

    def compute():
        with open(sys.argv[1], "a") as log:
            log.write("computed\\n")
        time.sleep(1.5)
        return 42

    cache = Cache(open_store(), signer=Signer(b"t"))
    print(cache.get_or_compute(sys.argv[2], compute).value, flush=True)
    """
)


def test_two_processes_racing_on_one_key_compute_it_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two processes on one store whose leases are in Redis (LeasedStore replaces the
    folder's file leases): one computes, the other waits for its entry."""
    log = tmp_path / "computed.log"
    procs = []
    for _ in range(2):
        env = {
            **os.environ,
            "NBCACHE_DIR": str(tmp_path / "shared"),
            "NBCACHE_LOCK_URL": redis_server.url,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _RACER, str(log), KEY],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["42", "42"]
    assert log.read_text().count("computed") == 1
