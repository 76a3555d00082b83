"""Writing an entry: the file preallocated up front, every byte hashed, few writes."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import xxhash

from nbcache.entry import format as entry_format
from nbcache.entry import spooling
from nbcache.entry.format import read_entry, write_entry
from nbcache.entry.pickling import dump_parts
from nbcache.entry.signing import Signer

KEY = "cd" * 16
TRAILER = 8 + 32 + 8  # header length, MAC, end marker


class Watched(io.RawIOBase):
    """A real file that records, at every write, how many bytes the file system holds."""

    def __init__(self, path: Path, fail_after: int | None = None) -> None:
        super().__init__()
        self.file = open(path, "xb", buffering=0)  # noqa: SIM115 (closed by close())
        self.calls: list[tuple[int, int]] = []  # (bytes asked, bytes allocated before)
        self.fail_after = fail_after

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.file.fileno()

    def tell(self) -> int:
        return self.file.tell()

    def write(self, data: Any) -> int:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise OSError(errno.EIO, "the disk went away")
        self.calls.append((memoryview(data).nbytes, os.fstat(self.fileno()).st_blocks * 512))
        written = self.file.write(data)
        assert written is not None
        return written

    def close(self) -> None:
        self.file.close()
        super().close()


def _write(f: Any, value: object, signer: Signer) -> int:
    return write_entry(f, KEY, dump_parts(value), {}, signer)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(time=lambda: 1_700_000_000.25)
    monkeypatch.setattr("nbcache.entry.format.time", clock)


def _data_end(data: bytes) -> int:
    header_len = int.from_bytes(data[-TRAILER : -TRAILER + 8], "little")
    return len(data) - TRAILER - header_len


def test_file_is_preallocated_before_the_first_byte(tmp_path: Path, signer: Signer) -> None:
    """The blocks of everything before the header exist before the first write, and a
    32 MB buffer goes out in a handful of large writes."""
    value = np.random.default_rng(1).random(4 << 20)  # 32 MB
    with Watched(tmp_path / "entry") as f:
        size = _write(f, value, signer)
        calls = f.calls
    data = (tmp_path / "entry").read_bytes()
    assert size == len(data)
    _, allocated = calls[0]
    assert allocated >= _data_end(data) > value.nbytes
    assert len(calls) <= value.nbytes // spooling.WRITE_CHUNK + 6
    assert min(asked for asked, _ in calls if asked > 1 << 20) >= 1 << 20
    info, loaded = read_entry(io.BytesIO(data), KEY, signer)
    assert np.array_equal(loaded, value) and info.key == KEY


@pytest.mark.usefixtures("frozen_clock")
def test_layout_is_unchanged_and_every_byte_hashed(tmp_path: Path, signer: Signer) -> None:
    """A preallocated file, a file system that refuses to preallocate and an in-memory
    file hold the same bytes; each buffer's checksum is the XXH3 of all of it."""
    value = {"big": np.arange(3 << 20, dtype=np.float64), "small": np.ones(300_000)}
    with Watched(tmp_path / "entry") as f:
        _write(f, value, signer)
    memory = io.BytesIO()
    _write(memory, value, signer)
    on_disk = (tmp_path / "entry").read_bytes()
    assert on_disk == memory.getvalue()
    header = entry_format.bounded_json(on_disk[_data_end(on_disk) : -TRAILER], 1 << 20)
    checksums = {length: checksum for _, length, checksum in header["buffers"]}
    big = value["big"].tobytes()
    assert checksums[len(big)] == xxhash.xxh3_128(big).hexdigest()


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EINVAL])
def test_a_file_system_that_refuses_is_written_as_before(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    value = np.arange(1 << 20, dtype=np.float64)
    expected = io.BytesIO()
    _write(expected, value, signer)

    def refuse(fd: int, size: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(spooling, "_allocate", refuse)
    with Watched(tmp_path / "entry") as f:
        _write(f, value, signer)
    assert (tmp_path / "entry").read_bytes() == expected.getvalue()


def test_a_full_disk_fails_before_any_byte_is_copied(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, size: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spooling, "_allocate", full)
    with Watched(tmp_path / "entry") as f:
        with pytest.raises(OSError) as raised:
            _write(f, np.zeros(1 << 20), signer)
        assert raised.value.errno == errno.ENOSPC and f.calls == []


def test_a_failed_write_leaves_no_hashing_thread(tmp_path: Path, signer: Signer) -> None:
    with Watched(tmp_path / "entry", fail_after=3) as f, pytest.raises(OSError, match="went"):
        _write(f, np.zeros(4 << 20), signer)
    assert not [t for t in threading.enumerate() if t.name.startswith("nbcache-xxh3")]


def test_in_memory_and_special_files_are_not_preallocated(signer: Signer) -> None:
    with open(os.devnull, "wb", buffering=0) as null:
        spooling.preallocate(null, 1 << 30)  # a character device: nothing to allocate
    spooling.preallocate(io.BytesIO(), 1 << 30)


def test_a_write_at_exit_hashes_on_its_own_thread(tmp_path: Path) -> None:
    """At interpreter exit no new thread starts: a large buffer is still written and hashed."""
    script = f"""
import atexit, io, sys, numpy as np, xxhash
from nbcache.entry.spooling import hashed_write
data = np.arange(4 << 20, dtype=np.float64)
def at_exit():
    with open({str(tmp_path / "out")!r}, "wb", buffering=0) as f:
        ok = hashed_write(f, memoryview(data)) == xxhash.xxh3_128(data.tobytes()).hexdigest()
    print("same checksum" if ok else "other checksum")
atexit.register(at_exit)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip() == "same checksum", done.stderr
    assert (tmp_path / "out").stat().st_size == 32 << 20
