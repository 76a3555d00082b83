"""The package itself: light to import, typed, and runnable from a shell."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import nbcache
from nbcache.cache.default import default_cache, open_store
from nbcache.settings import max_size

ROOT = Path(__file__).parent.parent


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbcache", *args], cwd=cwd, capture_output=True, text=True
    )


def test_import_is_light() -> None:
    """import nbcache (and a local store) loads neither IPython, ipywidgets nor numpy, nor
    any package of the s3, dask and redis extras."""
    heavy = ("IPython", "ipywidgets", "numpy", "pandas", "fsspec", "s3fs", "botocore", "redis")
    code = (
        "import sys, nbcache; nbcache.cache.default.open_store('.nbcache-unused'); "
        f"print(sorted(m for m in {heavy!r} + ('distributed', 'dask') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_base_install_pulls_no_extra() -> None:
    """fsspec, s3fs, redis and distributed come only with nbcache[s3], [redis], [dask]."""
    from importlib.metadata import requires

    base = [r for r in requires("nbcache") or [] if "extra ==" not in r]
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in base}
    assert names == {
        "ipython",
        "ipywidgets",
        "typing_extensions",
        "joblib",
        "cloudpickle",
        "xxhash",
    }
    extras = " ".join(r for r in requires("nbcache") or [] if "extra ==" in r)
    for extra, package in (("s3", "s3fs"), ("redis", "redis"), ("dask", "distributed")):
        assert f'extra == "{extra}"' in extras and package in extras


def test_public_api() -> None:
    """__all__ is a tuple of names that exist, and the package is marked typed."""
    assert isinstance(nbcache.__all__, tuple)
    assert all(hasattr(nbcache, name) for name in nbcache.__all__)
    assert (Path(nbcache.__file__).parent / "py.typed").exists()
    errors = ("KeyPicklingError", "ValuePicklingError", "ValueUnpicklingError", "IntegrityError")
    for name in (*errors, "StoreError"):
        assert issubclass(getattr(nbcache, name), nbcache.CacheError)


def test_default_store_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NBCACHE_DIR picks the folder and NBCACHE_MAX_SIZE the limit; URLs say what to do."""
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "here"))
    monkeypatch.setenv("NBCACHE_MAX_SIZE", "5GiB")
    assert default_cache().store.location == str(tmp_path / "here")  # type: ignore[union-attr]
    assert max_size() == 5 * 2**30
    monkeypatch.setenv("NBCACHE_MAX_SIZE", "none")
    assert max_size() is None
    monkeypatch.setenv("NBCACHE_MAX_SIZE", "lots")
    with pytest.warns(nbcache.CacheWarning, match="NBCACHE_MAX_SIZE"):
        assert max_size() == 10 * 1000**3  # an unusable setting: one warning, the default
    with pytest.raises(nbcache.CacheError, match="NBCACHE_DIR"):
        open_store("gopher://bucket/x")


def test_demo_computes_then_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo computes in one process and restores in a second, in ./.nbcache."""
    monkeypatch.delenv("NBCACHE_DIR")
    done = _run("demo", "--limit", "300000", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("computed in" in line for line in lines)
    assert any("restored in" in line for line in lines)
    assert (tmp_path / ".nbcache" / ".gitignore").exists()


def test_shell_housekeeping(tmp_path: Path) -> None:
    """list, info, clear and prune work from a shell on the configured store."""
    assert _run("demo", "--limit", "1000", cwd=tmp_path).returncode == 0
    listing = _run("list", cwd=tmp_path)
    assert "demo: primes below 1,000" in listing.stdout
    info = _run("info", cwd=tmp_path)
    assert "entries: 1" in info.stdout
    assert _run("prune", "--older-than", "30d", cwd=tmp_path).stdout.startswith("removed 0")
    bare = _run("clear", cwd=tmp_path)
    assert bare.returncode == 2 and "required" in bare.stderr  # nothing wiped by accident
    assert "removed 1" in _run("clear", "--all", cwd=tmp_path).stdout
    assert "no entries" in _run("list", cwd=tmp_path).stdout
    bad = _run("prune", "--max-size", "lots", cwd=tmp_path)
    assert bad.returncode == 2 and "GB" in bad.stderr
