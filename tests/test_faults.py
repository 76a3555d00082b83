"""Damaged, foreign and planted entries, a read-only store and a full disk.

Every fault must end as a miss (or memory-only caching) with a CacheWarning,
never as an exception in the caller, a wrong value, or code run from a pickle
nobody with this user's secret wrote.

The read-only and full-disk tests need ``mount`` (a read-only bind mount and a
small tmpfs): root ignores permission bits, a read-only mount stops root too.
They skip only when mounting is not permitted; CI runs them as root.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache import Cache, CacheWarning, Hit, LocalStore
from nbcache.entry.format import FORMAT, write_entry
from nbcache.entry.pickling import dump_parts
from nbcache.entry.signing import Signer

SECRET = b"nbcache-fault-tests"
KEY = "c0ffee" * 5 + "00"  # 32 hex digits
OTHER_KEY = "be" * 16
PREFIX = 16  # b"NBCACHE\0", u16 format, u16 flags, u32 reserved
TRAILER = 48  # u64 header length, 32-byte MAC, b"NBCEND\0\0"


# -- helpers -----------------------------------------------------------------


def _cache(root: Path, secret: bytes = SECRET) -> Cache:
    return Cache(LocalStore(root), signer=Signer(secret))


def _entry_path(root: Path, key: str) -> Path:
    return root / "v1" / "entries" / key[:2] / key


def _lookup(root: Path, key: str) -> tuple[Hit[Any] | None, list[str]]:
    """Look key up with a fresh Cache (nothing in memory); the CacheWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hit = _cache(root).lookup(key)
    return hit, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _caught(action: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    return result, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _big_value() -> dict[str, Any]:
    """Two out-of-band buffers (>= 1 MiB), the first of a size that needs padding after it."""
    rng = np.random.default_rng(20240229)
    return {
        "a": rng.standard_normal(196_609),  # 1_572_872 bytes: not a multiple of 4096
        "b": rng.integers(0, 256, (1 << 20) + 123, dtype=np.uint8),
        "small": np.arange(10),
        "label": "faults",
    }


def _equal(a: Any, b: Any) -> bool:
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in b)
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return bool(a == b)


def _regions(data: bytes) -> list[tuple[str, int, int]]:
    """The regions of an entry file as (name, start, end), read from its header; they tile it."""
    size = len(data)
    (header_len,) = struct.unpack_from("<Q", data, size - TRAILER)
    header_start = size - TRAILER - header_len
    header = json.loads(data[header_start : size - TRAILER])
    stream_offset, stream_len, _sha = header["stream"]
    regions = [("prefix", 0, PREFIX), ("stream", stream_offset, stream_offset + stream_len)]
    position = stream_offset + stream_len
    for index, (offset, length, _checksum) in enumerate(header["buffers"]):
        regions.append((f"padding{index}", position, offset))
        regions.append((f"buffer{index}", offset, offset + length))
        position = offset + length
    regions += [
        ("padding-end", position, header_start),
        ("header", header_start, size - TRAILER),
        ("trailer.header_len", size - TRAILER, size - TRAILER + 8),
        ("trailer.mac", size - TRAILER + 8, size - 8),
        ("trailer.end", size - 8, size),
    ]
    ends = [0] + [end for _name, _start, end in regions]
    assert [start for _name, start, _end in regions] == ends[:-1] and ends[-1] == size
    return regions


def _files(root: Path) -> dict[str, int]:
    """Every file under root, by relative path, with its size; the index (SQLite, whose
    write-ahead log comes and goes with its connections) aside."""
    return {
        str(path.relative_to(root)): path.stat().st_size
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith("index.sqlite")
    }


# -- bit flips and truncation ------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, bytes, list[tuple[str, int, int]]]:
    """A store holding one entry of _big_value(); its bytes and regions."""
    root = tmp_path / "store"
    assert _cache(root).put(KEY, _big_value(), {"label": "faults"})
    data = _entry_path(root, KEY).read_bytes()
    regions = _regions(data)
    names = [name for name, start, end in regions if end > start]
    assert {"padding0", "padding1", "buffer0", "buffer1"} <= set(names), regions
    return root, data, regions


def _positions(regions: list[tuple[str, int, int]], spread: int) -> list[int]:
    """Both ends of every region, a few points inside each, and `spread` points overall."""
    size = regions[-1][2]
    found = {round(i * (size - 1) / (spread - 1)) for i in range(spread)}
    for _name, start, end in regions:
        if end > start:
            found.update(range(start, end, max(1, (end - start) // 16)))
            found.update((start, end - 1))
    return sorted(found)


def _region_of(regions: list[tuple[str, int, int]], position: int) -> str:
    return next(name for name, start, end in regions if start <= position < end)


def test_flipped_bit_anywhere_is_a_miss_or_the_same_value(
    stored: tuple[Path, bytes, list[tuple[str, int, int]]],
) -> None:
    """One flipped bit outside padding is a miss with a warning; in padding, still equal."""
    root, data, regions = stored
    path = _entry_path(root, KEY)
    expected = _big_value()
    failures = []
    positions = _positions(regions, 200)
    for position in positions:
        region = _region_of(regions, position)
        damaged = bytearray(data)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(damaged)
        try:
            hit, warned = _lookup(root, KEY)
        except Exception as exc:  # noqa: BLE001 - any exception is the failure reported
            failures.append(f"{region} @{position}: raised {exc!r}")
            continue
        if hit is None:
            if len(warned) != 1 or path.exists():
                failures.append(
                    f"{region} @{position}: miss, warnings {warned}, kept={path.exists()}"
                )
        elif not region.startswith("padding"):
            failures.append(f"{region} @{position}: a damaged entry loaded")
        elif not _equal(hit.value, expected) or warned:
            failures.append(f"{region} @{position}: loaded a different value, warnings {warned}")
    assert failures == [], f"{len(failures)} of {len(positions)} flips:\n" + "\n".join(failures)


def test_truncated_entry_at_any_length_is_a_miss(
    stored: tuple[Path, bytes, list[tuple[str, int, int]]],
) -> None:
    """An entry cut short at any length (region edges included) is a miss with one warning."""
    root, data, regions = stored
    path = _entry_path(root, KEY)
    failures = []
    lengths = [*_positions(regions, 100), len(data) - 1]
    for length in lengths:
        path.write_bytes(data[:length])
        try:
            hit, warned = _lookup(root, KEY)
        except Exception as exc:  # noqa: BLE001 - any exception is the failure reported
            failures.append(f"length {length}: raised {exc!r}")
            continue
        if hit is not None or len(warned) != 1 or path.exists():
            failures.append(f"length {length}: hit={hit is not None} warnings={warned}")
    assert failures == [], f"{len(failures)} of {len(lengths)} lengths:\n" + "\n".join(failures)
    path.write_bytes(data)  # and the whole file still loads: the damage was what mattered
    hit, warned = _lookup(root, KEY)
    assert hit is not None and _equal(hit.value, _big_value()) and warned == []


# -- planted and foreign entries ---------------------------------------------


class _Plant:
    """Unpickling this creates the file ``marker``: stands for any code in a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _entry_bytes(key: str, value: object, secret: bytes) -> bytes:
    f = io.BytesIO()
    write_entry(f, key, dump_parts(value), {}, Signer(secret))
    return f.getvalue()


def _parts(data: bytes) -> tuple[bytes, bytes, int]:
    """The prefix, the header, and the offset of the MAC of an entry."""
    (header_len,) = struct.unpack_from("<Q", data, len(data) - TRAILER)
    header_end = len(data) - TRAILER
    return data[:PREFIX], data[header_end - header_len : header_end], header_end + 8


def _with_mac(data: bytes, mac: bytes) -> bytes:
    _prefix, _header, at = _parts(data)
    assert len(mac) == 32
    return data[:at] + mac + data[at + 32 :]


def _planted(how: str, marker: Path) -> bytes:
    evil = _entry_bytes(KEY, _Plant(marker), SECRET)
    if how == "other-secret":
        return _entry_bytes(KEY, _Plant(marker), b"somebody else's secret")
    if how == "garbage-mac":
        return _with_mac(evil, hashlib.sha256(b"garbage").digest())
    if how == "mac-of-another-entry":
        # A real MAC under our secret, of a benign entry's prefix and header.
        _prefix, benign_header, _at = _parts(_entry_bytes(KEY, "benign", SECRET))
        return _with_mac(evil, Signer(SECRET).sign(evil[:PREFIX], benign_header))
    if how == "mac-without-prefix":
        # Our secret over the right header, but not over the prefix as the format says.
        _prefix, header, _at = _parts(evil)
        return _with_mac(evil, Signer(SECRET).sign(header))
    raise AssertionError(how)


def test_planted_pickle_runs_when_signed_with_our_secret(tmp_path: Path) -> None:
    """Control for the planted-pickle tests: the same payload, correctly signed, does run."""
    root, marker = tmp_path / "store", tmp_path / "marker"
    path = _entry_path(root, KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(_entry_bytes(KEY, _Plant(marker), SECRET))
    hit, warned = _lookup(root, KEY)
    assert hit is not None and warned == []
    assert marker.exists()


@pytest.mark.parametrize(
    "how", ["other-secret", "garbage-mac", "mac-of-another-entry", "mac-without-prefix"]
)
def test_planted_pickle_with_a_wrong_signature_never_runs(tmp_path: Path, how: str) -> None:
    """An entry whose MAC is not ours over its prefix and header is refused before unpickling."""
    root, marker = tmp_path / "store", tmp_path / "marker"
    path = _entry_path(root, KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(_planted(how, marker))
    hit, warned = _lookup(root, KEY)
    assert hit is None
    assert not marker.exists(), "the planted pickle ran"
    assert len(warned) == 1 and "signature" in warned[0], warned
    # Another user's entry (the fingerprint in its header says so) is left for its owner;
    # one that is nobody's is removed.
    assert path.exists() == (how == "other-secret")


def test_planted_stream_under_a_valid_header_never_runs(tmp_path: Path) -> None:
    """A signed header pins its stream: a stream swapped in under it is refused, not run."""
    root, marker = tmp_path / "store", tmp_path / "marker"
    benign = _entry_bytes(KEY, "b" * 400, SECRET)
    evil_stream = dump_parts(_Plant(marker)).stream
    _prefix, header, _at = _parts(benign)
    stream_offset, stream_len, _sha = json.loads(header)["stream"]
    assert len(evil_stream) <= stream_len
    # pickle stops at the STOP opcode, so the tail pads the planted stream to the same length.
    planted = evil_stream + b"\0" * (stream_len - len(evil_stream))
    data = benign[:stream_offset] + planted + benign[stream_offset + stream_len :]
    path = _entry_path(root, KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    hit, warned = _lookup(root, KEY)
    assert hit is None
    assert not marker.exists(), "the planted pickle ran"
    assert len(warned) == 1 and "stream" in warned[0], warned
    assert not path.exists()


def test_entry_under_another_keys_name_is_refused(tmp_path: Path) -> None:
    """An entry (our secret) copied to another key's path is a key mismatch, not a hit."""
    root = tmp_path / "store"
    assert _cache(root).put(KEY, {"x": 1})
    moved = _entry_path(root, OTHER_KEY)
    moved.parent.mkdir(parents=True)
    shutil.copyfile(_entry_path(root, KEY), moved)
    hit, warned = _lookup(root, OTHER_KEY)
    assert hit is None
    assert len(warned) == 1 and "another key" in warned[0], warned
    assert not moved.exists()
    hit, warned = _lookup(root, KEY)
    assert hit is not None and hit.value == {"x": 1} and warned == []


def _foreign_format(data: bytes) -> bytes:
    """The entry as a later release's format would number it."""
    return data[:8] + struct.pack("<H", FORMAT + 1) + data[10:]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        pytest.param(_foreign_format, f"format {FORMAT + 1}", id="later-format"),
        pytest.param(lambda _d: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "magic", id="png"),
        pytest.param(lambda _d: b"hello\n", "truncated", id="tiny-text"),
        pytest.param(lambda _d: b"", "truncated", id="empty"),
    ],
)
def test_foreign_file_is_a_miss_with_one_warning(
    tmp_path: Path, make: Callable[[bytes], bytes], says: str
) -> None:
    """Another format version, or a file that is no entry at all, is one warning and a miss."""
    root = tmp_path / "store"
    assert _cache(root).put(KEY, [1, 2, 3])
    path = _entry_path(root, KEY)
    path.write_bytes(make(path.read_bytes()))
    hit, warned = _lookup(root, KEY)
    assert hit is None
    assert len(warned) == 1 and says in warned[0], warned
    assert not path.exists()


# -- read-only store ---------------------------------------------------------


def _skip_outside_ci(reason: str) -> None:
    """A developer without root may skip these; CI (root, CI=true) must run them."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the read-only and full-disk tests as root")
    pytest.skip(reason)


@pytest.fixture
def mount() -> Iterator[Callable[..., None]]:
    """mount(*args, target): run mount(8), undone at teardown; skip if mounting is not allowed."""
    mounted: list[Path] = []

    def run(*args: str, target: Path) -> None:
        if shutil.which("mount") is None:
            _skip_outside_ci("no mount command")
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            reason = done.stderr.strip()
            denied = ("permission denied", "not permitted", "must be superuser", "only root")
            if os.geteuid() != 0 or any(word in reason.lower() for word in denied):
                _skip_outside_ci(f"mounting is not permitted here: {reason}")
            pytest.fail(f"mount {' '.join(args)} failed: {reason}")
        if "remount" not in ",".join(args):
            mounted.append(target)

    yield run
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True)


def _make_read_only(mount: Callable[..., None], target: Path) -> None:
    mount("--bind", str(target), target=target)
    mount("-o", "remount,bind,ro", target=target)
    probe = target / ".probe"
    with pytest.raises(OSError):
        probe.write_text("root can write here: the mount is not read-only")


def _same_shard_key(key: str) -> str:
    return key[:2] + "d" * (len(key) - 2)


@pytest.mark.parametrize("read_only", ["root", "entries"])
def test_put_to_read_only_store_keeps_value_in_memory(
    tmp_path: Path, mount: Callable[..., None], read_only: str
) -> None:
    """put into a read-only store (all of it, or entries/ only) stores nothing and warns."""
    root = tmp_path / "store"
    assert _cache(root).put(KEY, "earlier")
    before = _files(root)
    # "entries": the temporary file is written whole, then the rename (or the new shard's
    # mkdir) fails, so the temporary file must be cleaned up.
    _make_read_only(mount, root if read_only == "root" else root / "v1" / "entries")
    cache = _cache(root)
    value = _big_value()
    stored, warned = _caught(lambda: cache.put(_same_shard_key(KEY), value))
    assert stored == 0
    assert len(warned) == 1 and "memory only" in warned[0], warned
    if read_only == "root":
        assert "read-only" in warned[0], warned
    stored, _warned = _caught(lambda: cache.put(OTHER_KEY, "new shard"))
    assert stored == 0
    hit = cache.lookup(_same_shard_key(KEY))
    assert hit is not None and hit.source == "memory" and _equal(hit.value, value)
    hit = cache.lookup(OTHER_KEY)
    assert hit is not None and hit.source == "memory" and hit.value == "new shard"
    assert _files(root) == before


def test_read_only_store_still_serves_its_entries(
    tmp_path: Path, mount: Callable[..., None]
) -> None:
    """Entries in a read-only store load (use counts are just not written), nothing raises."""
    root = tmp_path / "store"
    assert _cache(root).put(KEY, _big_value())
    before = _files(root)
    _make_read_only(mount, root)
    hit, _warned = _caught(lambda: _cache(root).lookup(KEY))
    assert hit is not None and hit.source == "store" and _equal(hit.value, _big_value())
    assert _files(root) == before


def test_damaged_entry_in_read_only_store_is_a_miss(
    tmp_path: Path, mount: Callable[..., None]
) -> None:
    """A damaged entry that cannot be removed (read-only store) is still just a miss."""
    root = tmp_path / "store"
    assert _cache(root).put(KEY, "value")
    path = _entry_path(root, KEY)
    path.write_bytes(path.read_bytes()[:-1])
    _make_read_only(mount, root)
    for _ in range(2):  # refused again the next time, the same way
        hit, warned = _lookup(root, KEY)
        assert hit is None and len(warned) == 1 and "truncated" in warned[0], warned
        assert path.exists()


# -- full disk ---------------------------------------------------------------


def test_put_to_full_disk_keeps_value_in_memory(tmp_path: Path, mount: Callable[..., None]) -> None:
    """On a full disk put stores nothing, warns, leaves no file and gives the space back."""
    root = tmp_path / "disk"
    root.mkdir()
    mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", target=root)
    rng = np.random.default_rng(7)
    earlier = {"array": rng.standard_normal(1 << 17)}  # 1 MiB: a buffer out of band
    cache = _cache(root)
    assert cache.put(KEY, earlier)
    before = _files(root)

    too_big = {"array": rng.standard_normal(1 << 19)}  # 4 MiB on a 3 MiB disk
    stored, warned = _caught(lambda: cache.put(OTHER_KEY, too_big))
    assert stored == 0
    assert len(warned) == 1 and "disk is full" in warned[0], warned
    hit = cache.lookup(OTHER_KEY)
    assert hit is not None and hit.source == "memory" and _equal(hit.value, too_big)
    assert _files(root) == before

    hit, warned = _lookup(root, KEY)
    assert hit is not None and hit.source == "store" and _equal(hit.value, earlier)
    assert warned == []
    # The failed write's space is free again: another 1 MiB entry fits beside the first.
    assert cache.put(_same_shard_key(KEY), {"array": rng.standard_normal(1 << 17)})


SIZE_LIMIT_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, warnings
    import numpy as np
    from nbcache import Cache, CacheWarning, LocalStore
    from nbcache.entry.signing import Signer

    root, key, other = sys.argv[1], sys.argv[2], sys.argv[3]
    def cache():
        return Cache(LocalStore(root), signer=Signer(b"limits"))
    value = {"array": np.random.default_rng(3).standard_normal(1 << 17), "tag": "limit"}
    assert cache().put(other, "earlier")
    path = os.path.join(root, "v1", "entries", key[:2], key)
    assert cache().put(key, value)
    size = os.path.getsize(path)
    os.remove(path)
    # CPython ignores SIGXFSZ: a write past RLIMIT_FSIZE fails with EFBIG (or is cut short).
    limits = sorted({*range(0, size, size // 40), *range(size - 64, size), 16, 17, size + 64})
    report = []
    for limit in limits:
        c = cache()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            try:
                stored = c.put(key, value)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        hit = c.lookup(key)
        with warnings.catch_warnings(record=True) as reread:
            warnings.simplefilter("always")
            again = cache().lookup(key)  # from the store, or a miss
        report.append({
            "limit": limit,
            "size": size,
            "stored": stored,
            "warnings": [str(w.message) for w in caught if issubclass(w.category, CacheWarning)],
            "memory": hit is not None and np.array_equal(hit.value["array"], value["array"]),
            "loads": again is not None and np.array_equal(again.value["array"], value["array"]),
            "reread_warnings": [str(w.message) for w in reread],
            "tmp": os.listdir(os.path.join(root, "v1", "tmp")),
        })
        if os.path.exists(path):
            os.remove(path)
    print(json.dumps(report))
    """
)


def test_put_over_file_size_limit_fails_cleanly_at_every_length(tmp_path: Path) -> None:
    """Wherever RLIMIT_FSIZE cuts an entry short, put stores nothing and leaves nothing."""
    root = tmp_path / "store"
    script = tmp_path / "size_limit.py"
    script.write_text(SIZE_LIMIT_CHILD)
    done = subprocess.run(
        [sys.executable, str(script), str(root), KEY, OTHER_KEY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    size = report[0]["size"]  # of one earlier write: the digits of its time vary it by a byte
    failures = []
    for row in report:
        refused_cleanly = (
            len(row["warnings"]) == 1
            and "size limit" in row["warnings"][0]
            and row["tmp"] == []
            and not row["loads"]
        )
        ok = (
            row["memory"]
            and row["reread_warnings"] == []
            # True means a whole entry is stored; False means nothing of it is left behind.
            and (row["loads"] if row["stored"] else refused_cleanly)
            and not (row["stored"] and row["limit"] < size - 16)
        )
        if not ok:
            failures.append(row)
    assert report[-1]["limit"] > size and report[-1]["stored"], "the control put did not store"
    shown = ("limit", "stored", "loads", "warnings", "reread_warnings", "tmp")
    assert failures == [], (
        f"{len(failures)} of {len(report)} limits fail (entry ~{size} bytes): "
        f"{[row['limit'] for row in failures]}; the first:\n"
        + "\n".join(str({k: row[k] for k in shown}) for row in failures[:2])
    )
    hit, warned = _caught(
        lambda: Cache(LocalStore(root), signer=Signer(b"limits")).lookup(OTHER_KEY)
    )
    assert hit is not None and hit.value == "earlier" and warned == []


# -- headers built to break the parser, and empty read-only folders ------------------


@pytest.mark.parametrize("header", [b"[" * 200_000, b"{" * 50_000 + b"}" * 50_000, b'"' * 9])
def test_a_header_nested_too_deep_is_a_miss_and_removed(tmp_path: Path, header: bytes) -> None:
    """A header of `[` repeated 200,000 times (or any other unparseable one) is refused with
    one warning and removed, never a RecursionError in the caller."""
    root = tmp_path / "store"
    assert _cache(root).put(OTHER_KEY, "makes the layout")
    path = _entry_path(root, KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = struct.pack("<8sHHI", b"NBCACHE\x00", 1, 0, 0)
    trailer = struct.pack("<Q32s8s", len(header), b"\0" * 32, b"NBCEND\x00\x00")
    path.write_bytes(prefix + header + trailer)
    hit, warned = _lookup(root, KEY)
    assert hit is None and len(warned) == 1 and "signature" in warned[0], warned
    assert not path.exists()
    assert _lookup(root, KEY) == (None, [])


def test_an_empty_read_only_folder_runs_the_body_with_one_warning(
    tmp_path: Path, mount: Callable[..., None]
) -> None:
    """An empty cache folder on a read-only mount: every call still computes (no raw
    OSError from the lease or the layout), with one warning."""
    root = tmp_path / "store"
    root.mkdir()
    _make_read_only(mount, root)
    cache = _cache(root)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    def twice() -> tuple[int, int]:
        first = cache.get_or_compute(KEY, compute).value
        return first, cache.get_or_compute(OTHER_KEY, compute).value

    values, warned = _caught(twice)
    assert values == (42, 42) and len(calls) == 2
    assert len(warned) == 1 and "read-only" in warned[0], warned
    assert list(root.iterdir()) == []


def test_a_read_only_folder_of_entries_serves_them_and_lists(
    tmp_path: Path, mount: Callable[..., None]
) -> None:
    """A read-only folder full of entries still hits, lists and counts, without its index
    being writable."""
    root = tmp_path / "store"
    for n, key in enumerate((KEY, OTHER_KEY)):
        assert _cache(root).put(key, n)
    _make_read_only(mount, root)
    records, warned = _caught(lambda: _cache(root).ledger.records())
    assert {r.key for r in records} == {KEY, OTHER_KEY} and warned == []
    hit, warned = _lookup(root, OTHER_KEY)
    assert hit is not None and hit.value == 1 and warned == []


def test_a_fifo_where_the_secret_should_be_does_not_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO at the secret's path is an unreadable secret, at once."""
    from nbcache import StoreError
    from nbcache.entry.signing import default_secret_path, load_secret

    monkeypatch.delenv("NBCACHE_SECRET")
    path = default_secret_path()
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    done = subprocess.run(
        [sys.executable, "-c", "from nbcache.entry.signing import load_secret; load_secret()"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert done.returncode != 0 and "not a regular file" in done.stderr
    with pytest.raises(StoreError, match="NBCACHE_SECRET"):
        load_secret()
