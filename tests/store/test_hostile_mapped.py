"""Mapped restores from a store others can touch: a file somebody else can write is
never mapped (cutting it short under the map would kill the kernel with SIGBUS), and a
forged header's lengths cost no memory. Linux only: elsewhere nothing is mapped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache.cache.core import Cache
from nbcache.entry import format as entry_format
from nbcache.entry.buffers import EntryFile
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from nbcache.store.paths import maps_safely
from tests.conftest import key_of
from tests.shells import close_shell, new_shell

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not maps_safely(Path(tempfile.gettempdir())),
    reason="entries are mapped on Linux's local file systems only",
)

KEY = key_of(1)
N = 1 << 20  # 8 MiB of float64: out of band, so mapped


def _stored(store: LocalStore, signer: Signer) -> Path:
    assert Cache(store, signer=signer).put(KEY, np.arange(N, dtype=np.float64))
    return store.entry_path(KEY)


def _mapped(path: Path) -> bool:
    with open("/proc/self/maps") as maps:
        return any(line.rstrip("\n").endswith(f" {path}") for line in maps)


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_an_entry_others_can_write_is_not_mapped(
    store: LocalStore, signer: Signer, mode: int
) -> None:
    """Group- or world-writable (a shared folder's umask, an ACL): read into memory."""
    path = _stored(store, signer)
    with store.open_entry(KEY) as f:
        assert isinstance(f, EntryFile)  # as written: only its owner can write it
    path.chmod(mode)
    with store.open_entry(KEY) as f:
        assert not isinstance(f, EntryFile)
    restored = Cache(store, signer=signer).lookup(KEY)
    assert restored is not None and not _mapped(path)
    assert np.array_equal(restored.value, np.arange(N, dtype=np.float64))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_an_entry_another_user_owns_is_not_mapped(store: LocalStore, signer: Signer) -> None:
    """A teammate's entry (a shared secret) is theirs to rewrite: read into memory."""
    path = _stored(store, signer)
    os.chown(path, 65534, -1)
    with store.open_entry(KEY) as f:
        assert not isinstance(f, EntryFile)


_CUT_SHORT = """
import os, sys
import numpy as np
from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore

store, key = LocalStore(sys.argv[1]), sys.argv[2]
signer = Signer(b"hostile-mapped-secret-32-bytes-ok")
assert Cache(store, signer=signer).put(key, np.arange({n}, dtype=np.float64))
os.chmod(store.entry_path(key), {mode})  # a shared folder: others may write it
value = Cache(store, signer=signer).lookup(key).value
os.truncate(store.entry_path(key), 4096)  # another user cuts it short, or copies over it
print(float(value.sum()))
"""


def test_a_shared_entry_cut_short_after_its_restore_never_kills_the_process(
    tmp_path: Path,
) -> None:
    """The restored value stays whole when a writable entry file is truncated under it."""
    script = textwrap.dedent(_CUT_SHORT.format(n=N, mode="0o664"))
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "store"), KEY],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert float(done.stdout) == float(np.arange(N, dtype=np.float64).sum())


def _forged_length(store: LocalStore, signer: Signer, length: int) -> None:
    """The entry's first buffer claims ``length`` bytes, under a valid signature (a
    teammate who shares the secret, or a bug)."""
    path = _stored(store, signer)
    data = path.read_bytes()
    trailer = entry_format._TRAILER
    header_len = trailer.unpack(data[-trailer.size :])[0]
    start = len(data) - trailer.size - header_len
    header = json.loads(data[start : len(data) - trailer.size])
    header["buffers"][0][1] = length
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    mac = signer.sign(data[:16], raw)
    path.chmod(0o644)
    path.write_bytes(data[:start] + raw + trailer.pack(len(raw), mac, entry_format.END))


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "copied"])
@pytest.mark.parametrize("length", [1 << 40, 1 << 62])
def test_a_forged_huge_length_is_a_miss_that_allocates_nothing(
    store: LocalStore,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
    mapped: bool,
    length: int,
) -> None:
    """A buffer said to run past the file is damage, found before memory is set aside."""
    _forged_length(store, signer, length)
    if not mapped:
        monkeypatch.setenv("NBCACHE_MAP_ENTRIES", "0")
    allocated: list[int] = []
    real = entry_format.allocate
    monkeypatch.setattr(entry_format, "allocate", lambda n: allocated.append(n) or real(n))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Cache(store, signer=signer).lookup(KEY) is None
    said = " ".join(str(w.message) for w in caught)
    assert "truncated" in said, said
    assert allocated == []


def test_a_restored_array_outlives_nbcache_clear(tmp_path: Path) -> None:
    """`%nbcache clear` removes the files a restored value is mapped from: the value stays."""
    shell = new_shell(tmp_path)
    try:
        cell = "import numpy as np\nx = np.arange(1 << 20, dtype=np.float64)"
        shell.run_cell(f"%%cache\n{cell}")
        shell.run_cell("del x")
        shell.run_cell(f"%%cache\n{cell}")  # restored from its entry file
        x: Any = shell.user_ns["x"]
        shell.run_line_magic("nbcache", "clear --all")
        assert float(x.sum()) == float(np.arange(1 << 20, dtype=np.float64).sum())
        x[:10] = -1.0  # copy on write: still ours to change
        assert float(x[:10].sum()) == -10.0
    finally:
        close_shell(shell)
