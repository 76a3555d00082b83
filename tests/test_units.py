"""Durations and sizes as users write them."""

from __future__ import annotations

import pytest

from nbcache.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1.5h", 5400),
        (" 10 s ", 10),
        (3, 3),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    """Every duration unit the README lists converts to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("20GB", 20 * 10**9),
        ("5KB", 5000),
        ("1TB", 10**12),
        ("512MiB", 512 * 2**20),
        ("4GiB", 4 * 2**30),
        ("1KiB", 1024),
        ("2TiB", 2 * 2**40),
        ("100", 100),
        ("100B", 100),
        ("1.5MB", 1_500_000),
        ("20gb", 20 * 10**9),
    ],
)
def test_parse_size(text: str, nbytes: int) -> None:
    """Decimal units are powers of 1000, binary ones powers of 1024."""
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("bad", ["", "GB", "7w", "-1s", "1 2s", "ten"])
def test_bad_duration_says_what_to_write(bad: str) -> None:
    """A bad duration names the units that are accepted."""
    with pytest.raises(ValueError, match="s, m, h"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["", "20 GBs", "5 PB", "-3MB", "lots"])
def test_bad_size_says_what_to_write(bad: str) -> None:
    """A bad size names the units that are accepted."""
    with pytest.raises(ValueError, match="GB"):
        parse_size(bad)


def test_formatting() -> None:
    """Sizes and durations print the way the status line shows them."""
    assert format_size(812_000_000) == "812.0 MB"
    assert format_size(12) == "12 B"
    assert format_duration(192.4) == "3 min 12 s"
    assert format_duration(0.41) == "0.41 s"
    assert format_duration(0.012) == "12 ms"
    assert format_duration(3 * 86400 + 7200) == "3 d 2 h"
