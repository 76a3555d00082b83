"""The signed entry format: layout, verification before loading, and its limits."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from nbcache import IntegrityError
from nbcache.entry import format as entry_format
from nbcache.entry.format import ALIGN, FORMAT, bounded_json, read_entry, read_info, write_entry
from nbcache.entry.pickling import dump_parts
from nbcache.entry.signing import Signer

KEY = "ab" * 16


def _entry(value: object, signer: Signer, meta: dict[str, object] | None = None) -> bytes:
    out = io.BytesIO()
    size = write_entry(out, KEY, dump_parts(value), meta or {"compute_seconds": 2.5}, signer)
    assert size == len(out.getvalue())
    return out.getvalue()


def _header(data: bytes) -> dict[str, object]:
    (length,) = struct.unpack("<Q", data[-48:-40])
    parsed: dict[str, object] = json.loads(data[-48 - length : -48])
    return parsed


def test_round_trip_with_metadata(signer: Signer) -> None:
    """An entry loads back to an equal value with its signed metadata."""
    value = {"a": np.arange(3 * 2**18, dtype=np.float64), "label": "x"}
    info, loaded = read_entry(io.BytesIO(_entry(value, signer, {"label": "fit"})), KEY, signer)
    assert np.array_equal(loaded["a"], value["a"])
    assert loaded["a"].flags.writeable
    assert info.key == KEY and info.meta == {"label": "fit"}
    assert info.nbytes >= value["a"].nbytes  # type: ignore[union-attr]


def test_buffers_are_page_aligned(signer: Signer) -> None:
    """Every out-of-band buffer starts on a 4096-byte boundary in the file."""
    value = [np.ones(2**17 + 1), np.arange(2**20, dtype=np.int8), np.ones(2**20 + 3, np.uint8)]
    data = _entry(value, signer)
    layout = _header(data)["buffers"]
    assert isinstance(layout, list) and len(layout) == 3
    assert all(offset % ALIGN == 0 for offset, _length, _checksum in layout)


def test_read_info_needs_only_the_header(signer: Signer) -> None:
    """read_info verifies the header and never touches the payload."""
    data = bytearray(_entry({"a": np.zeros(2**18)}, signer))
    middle = len(data) // 2
    data[middle] ^= 0xFF  # damage the payload only
    info = read_info(io.BytesIO(bytes(data)), signer)
    assert info.compute_seconds == 2.5
    assert info.meta["compute_seconds"] == 2.5
    with pytest.raises(IntegrityError):
        read_entry(io.BytesIO(bytes(data)), KEY, signer)


def test_other_secret_is_refused(signer: Signer) -> None:
    """An entry signed with another secret is an IntegrityError that says how to share."""
    data = _entry([1, 2, 3], Signer(b"someone-else"))
    with pytest.raises(IntegrityError, match="NBCACHE_SECRET"):
        read_entry(io.BytesIO(data), KEY, signer)
    with pytest.raises(IntegrityError):
        read_info(io.BytesIO(data), signer)


def test_other_key_is_refused(signer: Signer) -> None:
    """A valid entry presented under another key is refused."""
    with pytest.raises(IntegrityError, match="another key"):
        read_entry(io.BytesIO(_entry(1, signer)), "cd" * 16, signer)


def test_format_version_is_checked(signer: Signer) -> None:
    """An entry of another on-disk format is refused by name."""
    data = bytearray(_entry(1, signer))
    struct.pack_into("<H", data, 8, FORMAT + 1)
    with pytest.raises(IntegrityError, match=f"format {FORMAT + 1}"):
        read_entry(io.BytesIO(bytes(data)), KEY, signer)


@pytest.mark.parametrize("data", [b"", b"NBCACHE\x00", b"PK\x03\x04" + b"\x00" * 100])
def test_not_an_entry(data: bytes, signer: Signer) -> None:
    """Empty, short and foreign files are IntegrityErrors."""
    with pytest.raises(IntegrityError):
        read_entry(io.BytesIO(data), KEY, signer)


def test_a_header_with_few_brackets_is_parsed_without_the_depth_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JSON cannot nest deeper than it has opening brackets: a usual header is parsed
    without the scan that measures the depth, and a deep one is still refused."""

    class Refuse:
        def findall(self, data: bytes) -> list[bytes]:
            raise AssertionError("the depth scan ran")

    monkeypatch.setattr(entry_format, "_BRACKETS", Refuse())
    shallow = b'{"a":[1,{"b":[2]}],"s":"[[{{"}'
    assert bounded_json(shallow, max_depth=8) == json.loads(shallow)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="nested deeper"):
        bounded_json(b"[" * 9 + b"]" * 9, max_depth=8)
    assert bounded_json(b'["[[[[[[[[["]', max_depth=8) == ["[[[[[[[[["]


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":[1,2.5,null,true],"b":{"c":"\\u00e9"}}',  # as the writers make it
        b' {"a":1} \n',  # space around the value
        '\ufeff{"a":1}'.encode(),  # a UTF-8 byte order mark
        '{"a":"\u00e9"}'.encode("utf-16"),  # another encoding json.loads detects
        '{"a":1}'.encode("utf-32-le"),
        b"[NaN,Infinity,-Infinity]",
        b'"text"',
        b"7",
    ],
)
def test_a_header_parses_as_json_loads_parses_it(data: bytes) -> None:
    """The scanner called alone gives what json.loads gives, whatever the bytes."""
    assert repr(bounded_json(data)) == repr(json.loads(data))


@pytest.mark.parametrize("data", [b'{"a":1}x', b'{"a":1}{"b":2}', b'{"a":', b"", b"\xff{}"])
def test_a_header_json_loads_refuses_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        bounded_json(data)


def _format1_entry() -> tuple[bytes, str]:
    from tests.data.make_golden import GOLDEN

    key = next(k for k, v in GOLDEN.items() if "ints" in v)
    return (Path(__file__).parents[1] / "data" / "format1" / key).read_bytes(), key


def test_a_format1_entry_is_still_checked_by_hmac_sha256() -> None:
    """Entries written before keyed BLAKE2b load, and only under their HMAC-SHA256: one
    changed byte of the header, the stream, or the MAC is refused as before."""
    from tests.data.make_golden import SECRET

    data, key = _format1_entry()
    assert struct.unpack_from("<H", data, 8)[0] == 1
    info, value = read_entry(io.BytesIO(data), key, Signer(SECRET))
    assert value["ints"] == [1, 2, 3] and info.meta["label"] == "golden"
    (length,) = struct.unpack("<Q", data[-48:-40])
    for where in (20, len(data) - 48 - length + 5, len(data) - 30):  # stream, header, MAC
        damaged = bytearray(data)
        damaged[where] ^= 0x01
        with pytest.raises(IntegrityError):
            read_entry(io.BytesIO(bytes(damaged)), key, Signer(SECRET))


def test_a_format_number_changed_in_place_fails_the_mac(signer: Signer) -> None:
    """The prefix is signed, so an entry relabelled as the other format (to be checked by
    the other scheme) is refused, either way round."""
    data = bytearray(_entry([1, 2, 3], signer))
    struct.pack_into("<H", data, 8, 1)
    with pytest.raises(IntegrityError, match="signature"):
        read_entry(io.BytesIO(bytes(data)), KEY, signer)
    old, key = _format1_entry()
    relabelled = bytearray(old)
    struct.pack_into("<H", relabelled, 8, FORMAT)
    from tests.data.make_golden import SECRET

    with pytest.raises(IntegrityError, match="signature"):
        read_entry(io.BytesIO(bytes(relabelled)), key, Signer(SECRET))


def test_reading_an_entry_uses_no_openssl_hash(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hit checks its MAC and stream with BLAKE2b, built into Python: no SHA-256 or
    HMAC from OpenSSL, whose first use in a process costs a fresh kernel's first hit."""
    import hashlib
    import hmac

    data = _entry({"rows": np.arange(1000.0), "label": "x"}, signer)

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("an OpenSSL-backed hash was made on the read path")

    for name in ("sha256", "new", "pbkdf2_hmac"):
        monkeypatch.setattr(hashlib, name, refused)
    monkeypatch.setattr(hmac, "new", refused)
    monkeypatch.setattr(hmac, "digest", refused)
    info, value = read_entry(io.BytesIO(data), KEY, signer)
    assert value["label"] == "x" and info.key == KEY
    assert read_info(io.BytesIO(data), signer).key == KEY


def test_a_secret_longer_than_a_blake2b_key_is_used_whole() -> None:
    """Every byte of a long NBCACHE_SECRET counts, past the 64 a BLAKE2b key holds."""
    long = b"s" * 100
    assert Signer(long).sign(b"x") != Signer(long[:64]).sign(b"x")
    assert Signer(long).sign(b"x") != Signer(long[:-1] + b"t").sign(b"x")
    assert Signer(long).sign(b"x") == Signer(bytes(long)).sign(b"x")
