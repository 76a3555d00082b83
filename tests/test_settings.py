"""Bad settings and broken folders degrade: one warning naming the variable, the value and
the fix, then the default (or memory only); never an error before a call's body runs."""

from __future__ import annotations

import os
import re
import stat
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nbcache import CacheWarning, memoize, settings
from nbcache.cache import default as default_module
from nbcache.cache.default import default_cache, set_default_cache
from nbcache.entry.signing import default_secret_path
from nbcache.store import LeasedStore, LocalStore


@pytest.fixture(autouse=True)
def _long_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret long enough not to be warned about, so each test sees its own warning only."""
    monkeypatch.setenv("NBCACHE_SECRET", "settings-tests-0123456789abcdef")


def _caught(action: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    return result, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _memoized_call() -> int:
    """What a user's cell does: a memoized call, twice (the second a hit); the misses."""

    @memoize
    def plus_one(x: int) -> int:
        return x + 1

    assert plus_one(1) == 2 and plus_one(1) == 2
    return plus_one.cache_info().misses


def _fresh_default(action: Callable[[], Any] = _memoized_call) -> tuple[Any, list[str]]:
    set_default_cache(None)
    return _caught(action)


@pytest.mark.parametrize("value", ["lots", "12 parsecs", "-5GB"])
def test_an_unusable_max_size_is_the_default_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NBCACHE_MAX_SIZE", value)
    calls, warned = _fresh_default()
    assert calls == 1
    assert len(warned) == 1, warned
    assert "NBCACHE_MAX_SIZE" in warned[0] and repr(value) in warned[0] and "20GB" in warned[0]
    assert default_cache().ledger.max_size == 10 * 10**9
    assert isinstance(default_cache().store, LocalStore)


def test_an_unknown_url_scheme_caches_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCACHE_DIR", "gopher://bucket/prefix")
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1 and "memory only" in warned[0], warned
    assert default_cache().store is None


def test_a_dir_that_is_a_file_caches_in_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "a-file"))
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1, warned
    assert "NBCACHE_DIR" in warned[0] and "is a file" in warned[0]
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_a_lock_url_without_redis_keeps_the_stores_own_leases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setenv("NBCACHE_LOCK_URL", "redis://127.0.0.1:1/0")
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1, warned
    assert "NBCACHE_LOCK_URL" in warned[0] and "nbcache[redis]" in warned[0]
    store = default_cache().store
    assert isinstance(store, LocalStore) and not isinstance(store, LeasedStore)


def test_a_bad_fsync_value_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCACHE_FSYNC", "sometimes")
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1 and "NBCACHE_FSYNC" in warned[0], warned


def test_each_bad_value_warns_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCACHE_MAX_SIZE", "oodles")
    _, first = _fresh_default()
    _, second = _fresh_default()
    assert len(first) == 1 and second == []


# -- the secret ---------------------------------------------------------------------


def test_an_unreadable_secret_caches_in_memory_and_removes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A folder where the secret should be: one warning that says how to fix it, memory-only
    caching, and the valid entries of the store stay."""
    set_default_cache(None)
    assert _memoized_call() == 1  # stores an entry with the env secret
    store = default_cache().store
    assert isinstance(store, LocalStore)
    before = sorted(s.key for s in store.entries())
    assert before
    monkeypatch.delenv("NBCACHE_SECRET")
    default_secret_path().mkdir(parents=True)
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1, warned
    assert "memory only" in warned[0] and "NBCACHE_SECRET" in warned[0]
    assert sorted(s.key for s in store.entries()) == before


def test_an_empty_secret_file_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBCACHE_SECRET")
    path = default_secret_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1, warned
    assert "empty" in warned[0] and "Delete it" in warned[0] and "None" not in warned[0]


def test_a_secret_others_can_read_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBCACHE_SECRET")
    path = default_secret_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"0123456789abcdef0123456789abcdef")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1 and "chmod 600" in warned[0], warned
    _, again = _fresh_default()
    assert again == []


def test_a_short_secret_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCACHE_SECRET", "hunter2")
    calls, warned = _fresh_default()
    assert calls == 1 and len(warned) == 1, warned
    assert "7 bytes" in warned[0] and "token_hex" in warned[0]


def test_settings_are_read_in_one_module() -> None:
    """default.py builds stores; the environment is read in nbcache.settings only."""
    source = Path(default_module.__file__).read_text()
    assert "os.environ" not in source


def test_no_module_but_settings_reads_an_nbcache_variable() -> None:
    """Every ``NBCACHE_*`` variable is read through nbcache.settings (writing one into a
    child's environment is not reading it); settings are imported from there, not from
    a module that passes them on."""
    package = Path(default_module.__file__).parents[1]
    reads = re.compile(r"""(environ(\.get)?|getenv)\(?\[?\s*["']NBCACHE_""")
    readers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "settings.py" and reads.search(path.read_text())
    ]
    assert readers == []
    assert not set(default_module.__all__) & set(dir(settings))


def test_a_cache_without_its_secret_reads_nothing_and_removes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Cache made without a signer, whose secret cannot be read: lookups, listings and
    puts are one warning, and every entry (even one whose stats were lost) stays."""
    from nbcache import Cache

    root = tmp_path / "store"
    Cache(LocalStore(root)).put("ab" * 16, "kept")
    (root / "v1" / "stats" / f"{'ab' * 16}.json").unlink()
    (root / "v1" / "index.sqlite").unlink()
    monkeypatch.delenv("NBCACHE_SECRET")
    default_secret_path().mkdir(parents=True)
    cache = Cache(LocalStore(root))

    def everything() -> Any:
        return cache.lookup("ab" * 16), cache.ledger.records(), cache.put("cd" * 16, "memory")

    (hit, records, stored), warned = _caught(everything)
    assert hit is None and stored == 0 and len(warned) == 1, warned
    assert [r.key for r in LocalStore(root).entries()] == ["ab" * 16]
    assert records == []


def test_auto_mode_settings_read_and_bad_values_warn_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcache.run.auto import from_environment

    for value, mode in (("1", "on"), ("on", "on"), ("lazy", "lazy"), ("off", None), ("", None)):
        monkeypatch.setenv("NBCACHE_AUTO", value)
        assert settings.auto_mode() == mode
    monkeypatch.setenv("NBCACHE_AUTO", "sometimes")
    mode, caught = _caught(settings.auto_mode)
    assert mode is None and len(caught) == 1 and "NBCACHE_AUTO='sometimes'" in caught[0]
    assert _caught(settings.auto_mode)[1] == []  # once per process
    monkeypatch.setenv("NBCACHE_AUTO", "lazy")
    monkeypatch.setenv("NBCACHE_AUTO_MIN_SECONDS", "soon")
    auto, caught = _caught(from_environment)
    assert auto is not None and auto.lazy and auto.min_seconds is None
    assert len(caught) == 1 and "NBCACHE_AUTO_MIN_SECONDS" in caught[0]
    monkeypatch.setenv("NBCACHE_AUTO_MIN_SECONDS", "0")
    monkeypatch.setenv("NBCACHE_AUTO_LOG", "/tmp/cells.jsonl")
    auto = from_environment()
    assert auto is not None and auto.min_seconds == 0.0 and auto.log_path == "/tmp/cells.jsonl"


def test_the_memory_bound_follows_the_machine_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sixteenth of physical memory by default; a size, a share or none when set; a
    value that is neither is the default, with one warning naming it and the fix."""
    from nbcache import settings

    physical = settings.physical_memory()
    assert physical is not None and physical > 0  # Linux says
    monkeypatch.delenv("NBCACHE_MEMORY_SIZE", raising=False)
    assert settings.memory_size() == physical // 16
    for text, expected in (("2GB", 2 * 10**9), ("10%", physical // 10), ("none", None)):
        monkeypatch.setenv("NBCACHE_MEMORY_SIZE", text)
        assert settings.memory_size() == pytest.approx(expected, abs=1), text
    monkeypatch.setenv("NBCACHE_MEMORY_SIZE", "0")
    assert settings.memory_size() == 0  # nothing kept alive by the memory layer alone
    for bad in ("lots", "150%"):
        monkeypatch.setenv("NBCACHE_MEMORY_SIZE", bad)
        value, warned = _caught(settings.memory_size)
        assert value == physical // 16
        assert len(warned) == 1 and "NBCACHE_MEMORY_SIZE" in warned[0] and "10%" in warned[0]
    monkeypatch.setenv("NBCACHE_MEMORY_SIZE", "1MB")
    set_default_cache(None)
    assert default_cache().memory_use().max_bytes == 10**6
