"""The user's secret: created once, private, shared on purpose only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nbcache import StoreError
from nbcache.entry.signing import Signer, default_secret_path, load_secret


def test_env_secret_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """NBCACHE_SECRET is used as is and no file is created."""
    monkeypatch.setenv("NBCACHE_SECRET", "team-secret-of-a-safe-length")
    assert load_secret() == b"team-secret-of-a-safe-length"
    assert not default_secret_path().exists()


def test_created_on_first_use_with_mode_0600(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NBCACHE_SECRET a random secret is created once, readable by its owner only."""
    monkeypatch.delenv("NBCACHE_SECRET")
    first = load_secret()
    path = default_secret_path()
    assert path == Path(os.environ["XDG_CONFIG_HOME"]) / "nbcache" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert load_secret() == first
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_processes_starting_together_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several processes creating the secret at once all end up with the same one."""
    monkeypatch.delenv("NBCACHE_SECRET")
    code = "from nbcache.entry.signing import load_secret; print(load_secret().decode())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(6)
    ]
    secrets = {proc.communicate()[0].strip() for proc in procs}
    assert len(secrets) == 1
    assert secrets == {default_secret_path().read_bytes()}


def test_unreadable_secret_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret path that cannot be read says how to fix it."""
    monkeypatch.delenv("NBCACHE_SECRET")
    default_secret_path().mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(StoreError, match="NBCACHE_SECRET") as info:
        load_secret()
    assert isinstance(info.value.__cause__, OSError)


def test_signer_detects_any_change() -> None:
    """The MAC depends on every byte and on the secret."""
    mac = Signer(b"a").sign(b"header", b"stream")
    assert Signer.matches(mac, Signer(b"a").sign(b"header", b"stream"))
    assert not Signer.matches(mac, Signer(b"b").sign(b"header", b"stream"))
    assert not Signer.matches(mac, Signer(b"a").sign(b"header", b"streaM"))
    with pytest.raises(ValueError):
        Signer(b"")
