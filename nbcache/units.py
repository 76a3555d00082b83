"""Durations and sizes as users write them: ``90s``, ``7d``, ``20GB``, ``512MiB``."""

from __future__ import annotations

import re

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def _split(text: str, what: str, units: str) -> tuple[float, str]:
    match = _NUMBER_UNIT.match(text)
    if match is None:
        raise ValueError(f"cannot read {what} {text!r}: write a number and a unit, one of {units}")
    return float(match.group(1)), match.group(2).lower()


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds, or text such as ``90s``, ``5m``, ``7d``.

    Raises:
        ValueError: the text is not a non-negative number with one of s, m, h, d.
    """
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    number, unit = _split(value, "the duration", "s, m, h, d (e.g. 90s, 7d)")
    if unit not in _DURATION_UNITS:
        raise ValueError(f"unknown duration unit {unit!r} in {value!r}: use s, m, h or d")
    return number * _DURATION_UNITS[unit]


def parse_size(value: str | int) -> int:
    """Bytes in ``value``: an int, or text such as ``20GB`` (powers of 1000) or ``4GiB`` (1024).

    A bare number is bytes.

    Raises:
        ValueError: the text is not a non-negative number with a known unit.
    """
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    units = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. 20GB)"
    number, unit = _split(value, "the size", units)
    factor = _SIZE_UNITS.get(unit or "b")
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {value!r}: use one of {units}")
    return int(number * factor)


def format_size(nbytes: float) -> str:
    """``1234567`` -> ``'1.2 MB'`` (powers of 1000, as disks and the README count)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``192.4`` -> ``'3 min 12 s'``; under a minute, seconds with sensible precision."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
