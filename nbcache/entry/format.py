"""The on-disk form of one cache entry: signed header, pickle stream, aligned buffers.

Layout (format 2), every integer little-endian::

    prefix    b"NBCACHE\\0", u16 format, u16 flags, u32 reserved      16 bytes
    stream    the pickle stream                                       at offset 16
    buffers   each out-of-band buffer, starting on a 4096-byte boundary
    header    UTF-8 JSON: metadata, stream length and BLAKE2b-256, buffer
              offsets, lengths and XXH3-128 checksums
    trailer   u64 header length, keyed BLAKE2b-256(prefix + header), b"NBCEND\\0\\0"

The MAC covers the prefix and the header; the header pins the stream by its
BLAKE2b-256, so everything that can carry code is covered by a cryptographic MAC
under the user's secret and is checked before anything is unpickled.  Raw
buffers (array data, which cannot run code) are pinned by XXH3 checksums inside
the signed header: that catches corruption (bit flips, truncation, a torn copy)
at memory speed, but not a deliberate edit of array data by someone who can
write to the store and compute XXH3 collisions; it never lets them run code.

Format 1 is the same layout with HMAC-SHA256 for the MAC and SHA-256 for the
stream; such entries are still read, checked by those, and never written.

The header sits at the end so buffers stream to disk in one pass, each hashed
while it is still in the CPU cache.  Buffers start on page boundaries so a read
lands in page-aligned memory, and a local entry's buffers can be memory-mapped.

A mapped buffer (an :class:`~nbcache.entry.buffers.EntryFile`'s) is checked where it
lies, by hashing it once through the map, before anything is unpickled; the value's
arrays then use the map copy-on-write, so restoring costs what verifying does.  What
is checked is the file as read then: see docs/threat-model.md for what a later edit
of the file in place can and cannot do, and ``NBCACHE_MAP_ENTRIES=0`` to copy instead.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import xxhash

from .._version import __version__
from ..errors import ForeignEntryError, IntegrityError
from .buffers import EntryFile, allocate, map_private, release_pages
from .pickling import Pickled, load_parts
from .signing import MAC_SIZE, Signer, check_fingerprint, stream_digest
from .spooling import PREALLOCATE_MIN, hashed_write, preallocate, write_all

__all__ = [
    "FORMAT",
    "EntryInfo",
    "SignedHeader",
    "bounded_json",
    "read_entry",
    "read_header",
    "read_info",
    "write_entry",
]

FORMAT = 2
# The first format: HMAC-SHA256 and SHA-256 (through OpenSSL, whose first use in a
# process costs a fresh kernel's first hit a tenth of a millisecond); read, never written.
_HMAC_FORMAT = 1
MAGIC = b"NBCACHE\x00"
END = b"NBCEND\x00\x00"
ALIGN = 4096
_PREFIX = struct.Struct("<8sHHI")
_TRAILER = struct.Struct(f"<Q{MAC_SIZE}s8s")
# 256 KB reads beat 1 MB ones by 7 % on 1 GB here (writes: see spooling.py).
_READ_CHUNK = 256 << 10
_MAX_HEADER = 64 << 20
# An unverified header is parsed only to name its signer: a real one is a few KB.
_MAX_UNVERIFIED = 1 << 20
# Headers nest four deep; json's recursive parser overflows the stack near 1000.
_MAX_DEPTH = 32
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def bounded_json(data: bytes, max_size: int = _MAX_UNVERIFIED, max_depth: int = _MAX_DEPTH) -> Any:
    """``json.loads(data)`` for bytes anybody may have written: too big, nested too deep
    (``[`` repeated 200,000 times would raise RecursionError) or not JSON is a ValueError.
    """
    if len(data) > max_size:
        raise ValueError(f"{len(data)} bytes of JSON, more than the {max_size} allowed")
    # No deeper than it has brackets that open: a usual header has a dozen, and the
    # scan that finds the depth costs a small entry's hit more than its parse.
    if data.count(b"[") + data.count(b"{") > max_depth:
        depth = 0
        for bracket in _BRACKETS.findall(_STRINGS.sub(b"", data)):
            depth += 1 if bracket in b"[{" else -1
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth}")
    try:
        return _parsed(data)
    except RecursionError as exc:  # the count above is a bound, so this is belt and braces
        raise ValueError("JSON nested too deep") from exc


# json.loads's own parser, called without its Python wrappers: they detect the encoding
# and match whitespace with regular expressions, a third of a cold parse of a header.
_SCAN: Callable[[str, int], tuple[Any, int]]
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _parsed(data: bytes) -> Any:
    """``json.loads(data)``: the document as the writers make it (UTF-8, nothing around
    the value) goes straight to the parser; anything else, or an error, to json.loads."""
    try:
        text = data.decode()
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):  # not UTF-8, nothing at 0, or invalid
        return json.loads(data)
    # The whole text is one value starting at its first byte, so its first two bytes
    # are not NUL and json.loads would read it as UTF-8 too.
    return value if end == len(text) else json.loads(data)


@dataclass(frozen=True)
class EntryInfo:
    """What the signed header of an entry says, without loading its value."""

    key: str
    created: float
    nbytes: int
    meta: Mapping[str, Any]
    nbcache_version: str
    by_value: bool
    # The length of the signed header it was read from (0: not read from one), which
    # stands for what the parsed header takes in memory (see :mod:`nbcache.cache.lru`).
    header_size: int = field(default=0, compare=False)

    @property
    def compute_seconds(self) -> float:
        return float(self.meta.get("compute_seconds", 0.0))


def _pad(f: BinaryIO, position: int) -> int:
    padding = -position % ALIGN
    if padding:
        write_all(f, b"\x00" * padding)
    return position + padding


def _data_end(start: int, buffers: list[memoryview]) -> int:
    """Where the last buffer ends, each starting on an ALIGN boundary: what precedes the header."""
    position = start
    for view in buffers:
        position += -position % ALIGN + view.nbytes
    return position


def write_entry(
    f: BinaryIO, key: str, pickled: Pickled, meta: Mapping[str, Any], signer: Signer
) -> int:
    """Write one entry to ``f`` (positioned at 0) and return its size in bytes.

    ``meta`` must be JSON-serialisable; it is signed with the rest.
    """
    prefix = _PREFIX.pack(MAGIC, FORMAT, 0, 0)
    position = len(prefix) + len(pickled.stream)
    end = _data_end(position, pickled.buffers)
    if end >= PREALLOCATE_MIN:  # the header (a few KB) then grows the file past it
        preallocate(f, end)
    write_all(f, prefix)
    write_all(f, pickled.stream)
    layout = []
    for view in pickled.buffers:
        position = _pad(f, position)
        layout.append([position, view.nbytes, hashed_write(f, view)])
        position += view.nbytes
    header = json.dumps(
        {
            "key": key,
            "created": time.time(),
            "nbytes": pickled.nbytes,
            "nbcache_version": __version__,
            "signer": signer.fingerprint,
            "by_value": pickled.by_value,
            "stream": [
                len(prefix),
                len(pickled.stream),
                stream_digest(pickled.stream),
            ],
            "buffers": layout,
            "meta": dict(meta),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    write_all(f, header)
    mac = signer.sign(prefix, header)
    write_all(f, _TRAILER.pack(len(header), mac, END))
    return position + len(header) + _TRAILER.size


def _read_exact(f: BinaryIO, offset: int, length: int) -> bytes:
    mapped = getattr(f, "mapped", None)
    if isinstance(mapped, memoryview):  # in memory already: a slice, not a file's read
        data = bytes(mapped[offset : offset + length])
    else:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise IntegrityError("the entry is truncated: it will be recomputed")
    return data


def _signed_header(f: BinaryIO, size: int, signer: Signer) -> tuple[int, dict[str, Any], int]:
    """The entry's on-disk format, its header and the header's length, once the MAC over
    both checks out."""
    if size < _PREFIX.size + _TRAILER.size:
        raise IntegrityError("the entry is truncated: it will be recomputed")
    magic, fmt, _flags, _reserved = _PREFIX.unpack(_read_exact(f, 0, _PREFIX.size))
    if magic != MAGIC:
        raise IntegrityError("not an nbcache entry (bad magic bytes): it will be recomputed")
    if fmt not in (FORMAT, _HMAC_FORMAT):
        raise IntegrityError(
            f"the entry has on-disk format {fmt}, this nbcache reads format {FORMAT}: "
            "it will be recomputed"
        )
    header_len, mac, end = _TRAILER.unpack(_read_exact(f, size - _TRAILER.size, _TRAILER.size))
    header_end = size - _TRAILER.size
    if end != END or header_len > min(_MAX_HEADER, header_end - _PREFIX.size):
        raise IntegrityError("the entry is truncated or damaged: it will be recomputed")
    header = _read_exact(f, header_end - header_len, header_len)
    prefix = _PREFIX.pack(magic, fmt, _flags, _reserved)
    sign = signer.sign if fmt == FORMAT else signer.sign_hmac_sha256
    if not signer.matches(sign(prefix, header), mac):
        theirs = _claimed_signer(header)
        if theirs is not None and theirs != signer.fingerprint:
            raise ForeignEntryError(
                f"the entry's signature is another secret's (signer {theirs}, yours is "
                f"{signer.fingerprint}): it is left for its owner and recomputed here. To "
                "share a cache on purpose, everyone sets NBCACHE_SECRET to the team's secret."
            )
        raise IntegrityError(
            "the entry's signature does not match this user's secret (it was written by "
            "someone else, or damaged): it is not loaded and will be recomputed. To share a "
            "cache on purpose, share NBCACHE_SECRET."
        )
    try:
        parsed = bounded_json(header, max_size=_MAX_HEADER)
    except ValueError as exc:  # signed but unreadable: a bug, still only a miss
        raise IntegrityError("the entry's header is unreadable: it will be recomputed") from exc
    if not isinstance(parsed, dict) or not _well_formed(parsed):
        raise IntegrityError("the entry's header is malformed: it will be recomputed")
    fault = _layout_fault(parsed, header_end - header_len)
    if fault is not None:
        raise IntegrityError(f"the entry {fault}: it will be recomputed")
    return fmt, parsed, header_len


def _well_formed(header: Mapping[str, Any]) -> bool:
    """Whether a verified header has the fields reading relies on, of the right types."""
    stream = header.get("stream")
    buffers = header.get("buffers")
    return (
        isinstance(header.get("key"), str)
        and isinstance(header.get("created"), (int, float))
        and isinstance(header.get("nbytes"), int)
        and isinstance(header.get("meta", {}), dict)
        and isinstance(stream, list)
        and len(stream) == 3
        and all(isinstance(n, int) and n >= 0 for n in stream[:2])
        and isinstance(stream[2], str)
        and isinstance(buffers, list)
        and all(
            isinstance(b, list)
            and len(b) == 3
            and all(isinstance(n, int) and n >= 0 for n in b[:2])
            and isinstance(b[2], str)
            for b in buffers
        )
    )


def _layout_fault(header: Mapping[str, Any], data_end: int) -> str | None:
    """What is wrong with where a verified header says the stream and buffers lie, or None.

    They follow the prefix in order, apart, and end before the header: as written. A
    length past the file is found before memory is set aside for it (a read of it
    allocates that much first), and no two arrays share bytes, nor an array the header's.
    """
    position = _PREFIX.size
    for offset, length, _ in [header["stream"], *header["buffers"]]:
        if offset < position:
            return "lays its parts out overlapping (its header is malformed)"
        position = offset + length
    return None if position <= data_end else "is truncated"


def _claimed_signer(header: bytes) -> str | None:
    """Whose secret an unverified header says it was signed with (None: it does not say)."""
    try:
        parsed = bounded_json(header)
    except ValueError:
        return None
    return check_fingerprint(parsed.get("signer")) if isinstance(parsed, dict) else None


def _file_size(f: BinaryIO) -> int:
    return f.seek(0, 2)


def _info(header: Mapping[str, Any], header_size: int) -> EntryInfo:
    return EntryInfo(
        key=header["key"],
        created=float(header["created"]),
        nbytes=int(header["nbytes"]),
        meta=header.get("meta", {}),
        nbcache_version=str(header.get("nbcache_version", "")),
        by_value=bool(header.get("by_value", False)),
        header_size=header_size,
    )


@dataclass(frozen=True)
class SignedHeader:
    """The header of the entry in one open file, its MAC checked: what loading the value
    from that file needs besides (see :func:`read_entry`)."""

    fmt: int
    header: dict[str, Any]
    info: EntryInfo


def read_header(f: BinaryIO, signer: Signer) -> SignedHeader:
    """The verified header of the entry in ``f``; reads a few KB whatever the entry's size.

    Raises:
        IntegrityError: truncated, foreign, damaged, or signed with another secret.
    """
    fmt, header, header_len = _signed_header(f, _file_size(f), signer)
    return SignedHeader(fmt, header, _info(header, header_len))


def read_info(f: BinaryIO, signer: Signer) -> EntryInfo:
    """What :func:`read_header` says of the entry in ``f``."""
    return read_header(f, signer).info


def _read_buffer(
    f: BinaryIO, offset: int, length: int, checksum: str, mapping: mmap.mmap | None
) -> mmap.mmap | memoryview | bytes:
    if length == 0:
        return b""
    if mapping is not None:
        view = _verified_slice(memoryview(mapping), offset, length, checksum)
        release_pages(mapping, offset, length)
        return view
    mapped = getattr(f, "mapped", None)
    if isinstance(mapped, memoryview):
        return _verified_slice(mapped, offset, length, checksum)
    buffer = allocate(length)
    view = memoryview(buffer)
    digest = xxhash.xxh3_128()
    f.seek(offset)
    try:
        for start in range(0, length, _READ_CHUNK):
            chunk = view[start : start + _READ_CHUNK]
            got = f.readinto(chunk)  # type: ignore[attr-defined]
            if got != chunk.nbytes:
                raise IntegrityError("the entry is truncated: it will be recomputed")
            digest.update(chunk)
            chunk.release()
    finally:
        view.release()
    if digest.hexdigest() != checksum:
        buffer.close()
        raise IntegrityError("an array buffer in the entry is damaged: it will be recomputed")
    return buffer


def _verified_slice(mapped: memoryview, offset: int, length: int, checksum: str) -> memoryview:
    """A buffer of an entry in memory or mapped, checked where it lies: no copy."""
    view = mapped[offset : offset + length]
    if view.nbytes != length:
        raise IntegrityError("the entry is truncated: it will be recomputed")
    if xxhash.xxh3_128(view).hexdigest() != checksum:
        raise IntegrityError("an array buffer in the entry is damaged: it will be recomputed")
    return view


def read_entry(
    f: BinaryIO,
    key: str,
    signer: Signer,
    name: str = "value",
    checked: SignedHeader | None = None,
) -> tuple[EntryInfo, Any]:
    """Verify the entry in ``f`` and load its value; nothing is unpickled before it checks out.

    ``checked`` is the header :func:`read_header` verified in this same open file a
    moment before (a caller that looked at it first): its MAC is not checked again.

    Raises:
        IntegrityError: truncated, foreign, damaged, signed with another secret,
            or stored under another key.
        ValueUnpicklingError: verified bytes that do not load here (missing module).
    """
    signed = checked if checked is not None else read_header(f, signer)
    fmt, header, info = signed.fmt, signed.header, signed.info
    if info.key != key:
        raise IntegrityError("the entry belongs to another key: it will be recomputed")
    offset, length, sha = header["stream"]
    stream = _read_exact(f, offset, length)
    digest = stream_digest(stream) if fmt == FORMAT else hashlib.sha256(stream).hexdigest()
    if digest != sha:
        raise IntegrityError("the entry's pickle stream is damaged: it will be recomputed")
    layout = header["buffers"]
    mapping = map_private(f) if layout and isinstance(f, EntryFile) else None
    # Every buffer is checked (and its pages released) before any is used: releasing
    # a page of a private map drops what was written to it.
    buffers = [_read_buffer(f, o, n, c, mapping) for o, n, c in layout]
    return info, load_parts(stream, buffers, name=name)
