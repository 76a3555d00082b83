"""Every test runs with its own secret, config folder and store, never the user's."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcache.cache.core import Cache
from nbcache.cache.default import set_default_cache
from nbcache.entry.signing import Signer
from nbcache.settings import forget_warnings
from nbcache.store import LocalStore
from tests.servers import redis_server, s3, s3_server  # noqa: F401 - shared-store fixtures


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("NBCACHE_SECRET", "nbcache-test-secret-of-32-bytes-0k")
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "default-store"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for name in ("NBCACHE_MAX_SIZE", "NBCACHE_TIER", "NBCACHE_LOCK_URL", "NBCACHE_DASK"):
        monkeypatch.delenv(name, raising=False)
    # An IPython shell puts its own module in sys.modules["__main__"] and a reset empties
    # it; multiprocessing's spawn (a dask LocalCluster) then fails: put the real one back.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    set_default_cache(None)
    forget_warnings()  # each test is a process of its own as far as settings go
    yield
    set_default_cache(None)


@pytest.fixture
def signer() -> Signer:
    return Signer(b"nbcache-test-secret-of-32-bytes-0k")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def cache(store: LocalStore, signer: Signer) -> Cache:
    return Cache(store, signer=signer)


def key_of(n: int) -> str:
    """A valid cache key for test number ``n``."""
    return f"{n:032x}"
