"""Settings read from the environment: each in one place, checked once, never fatal.

A value that cannot be used gives one warning that names the variable, the
value and the fix, and the default is used instead: a typo in a shell profile
must not stop every cell before its body runs.  Each bad value warns once per
process, however often it is read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import warn
from .units import format_size, parse_size

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_MAX_SIZE",
    "LARGE_VALUE",
    "MEMORY_SHARE",
    "auto_log",
    "auto_min_seconds",
    "auto_mode",
    "dask_address",
    "fsync_enabled",
    "lock_url",
    "map_entries",
    "max_size",
    "memory_size",
    "physical_memory",
    "run_batches",
    "secret",
    "store_location",
    "tier_location",
    "unusable_lock_url",
    "unusable_settings",
    "widgets_forced",
]

DEFAULT_DIR = ".nbcache"
# Big enough for a few fitted models and feature tables, small enough not to
# fill a laptop's disk unnoticed.
DEFAULT_MAX_SIZE = "10GB"
# The memory layer keeps at most this share of the machine's memory alive on its own
# (NBCACHE_MEMORY_SIZE overrides it): live values make hits instant, but a kernel that
# holds gigabytes its user deleted is a kernel that runs out of memory.
MEMORY_SHARE = 1 / 16
# A value this large is never kept alive by the memory layer alone: it is held only
# while the user's names hold it, so `del` frees it (a later hit loads it again).
LARGE_VALUE = 16 * 1024**2
_MEMORY_UNKNOWN = 1024**3  # where the machine does not say how much memory it has
_OFF = {"0", "false", "no", "off"}
_ON = {"1", "true", "yes", "on"}
_UNLIMITED = {"0", "none", "unlimited", "inf"}
_warned: set[tuple[str, str]] = set()


def _unusable(name: str, value: str, why: str, fallback: str, fix: str) -> None:
    if (name, value) in _warned:
        return
    _warned.add((name, value))
    warn(f"nbcache: {name}={value!r} {why}: {fallback}. {fix}", stacklevel=4)


def unusable_settings() -> list[str]:
    """The variables this process found unusable (and replaced by their defaults)."""
    return sorted({name for name, _value in _warned})


def forget_warnings() -> None:
    """Warn again about settings already warned about, as a new process would (tests)."""
    _warned.clear()


def store_location() -> str:
    """``NBCACHE_DIR`` or ``.nbcache`` in the working directory."""
    return os.environ.get("NBCACHE_DIR", "").strip() or DEFAULT_DIR


def max_size() -> int | None:
    """``NBCACHE_MAX_SIZE`` in bytes (default 10 GB); None when set to ``none`` or ``0``.

    A value that is not a size is the default, with one warning.
    """
    text = os.environ.get("NBCACHE_MAX_SIZE", "").strip() or DEFAULT_MAX_SIZE
    if text.lower() in _UNLIMITED:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        default = parse_size(DEFAULT_MAX_SIZE)
        _unusable(
            "NBCACHE_MAX_SIZE",
            text,
            f"is not a size ({exc})",
            f"the limit is the default, {format_size(default)}",
            "Set it to a size such as 20GB or 500MiB, or to none for no limit.",
        )
        return default


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None where it cannot be read."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None  # Windows has no sysconf
    return pages * page if pages > 0 and page > 0 else None


def memory_size() -> int | None:
    """``NBCACHE_MEMORY_SIZE``: the bytes the in-memory layer alone keeps alive, a size
    (``2GB``) or a share of the machine's memory (``10%``); None when ``none``.

    Default: a sixteenth of physical memory (1.5 GB on a 24 GB machine; 1 GiB where
    the machine does not say). A value that cannot be read is the default, with one
    warning.
    """
    total = physical_memory()
    default = int(total * MEMORY_SHARE) if total else _MEMORY_UNKNOWN
    text = os.environ.get("NBCACHE_MEMORY_SIZE", "").strip()
    if not text:
        return default
    if text.lower() in ("none", "unlimited", "inf"):
        return None
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 <= share <= 100:
                raise ValueError(f"{share}% is not between 0% and 100%")
            return int((total or _MEMORY_UNKNOWN * 16) * share / 100)
        return parse_size(text)
    except ValueError as exc:
        _unusable(
            "NBCACHE_MEMORY_SIZE",
            text,
            f"is neither a size nor a share of memory ({exc})",
            f"the memory layer keeps up to the default, {format_size(default)}",
            "Set it to a size such as 2GB, to a share such as 10%, or to none.",
        )
        return default


def fsync_enabled() -> bool:
    """False when ``NBCACHE_FSYNC`` is 0/false/no/off: faster writes, less durable on power loss.

    Anything else but an on-word is the default (on), with one warning.
    """
    return _switch(
        "NBCACHE_FSYNC",
        "entries are synced to disk (the default)",
        "Set it to 0 (faster, less durable) or 1.",
    )


def map_entries() -> bool:
    """False when ``NBCACHE_MAP_ENTRIES`` is 0/false/no/off: large arrays of a local entry
    are copied into memory when restored instead of mapped copy-on-write.

    Mapped (the default), an array is verified as the file reads when it is restored and
    then used in place; copied, the bytes verified are the bytes kept, whatever is done
    to the file afterwards (see docs/threat-model.md). Anything else but an on-word is
    the default (mapped), with one warning.
    """
    return _switch(
        "NBCACHE_MAP_ENTRIES",
        "large arrays of local entries are mapped (the default)",
        "Set it to 0 (copy into memory) or 1.",
    )


def run_batches() -> bool:
    """False when ``NBCACHE_RUN_BATCHES`` is 0/false/no/off: ``nbcache run`` sends every
    cell in a kernel request of its own, consecutive restored cells included.

    Batched (the default), a run of restored cells costs one round trip to the kernel;
    the executed notebook is the same either way. Anything else but an on-word is the
    default, with one warning.
    """
    return _switch(
        "NBCACHE_RUN_BATCHES",
        "consecutive restored cells go to the kernel in one request (the default)",
        "Set it to 0 (one request per cell) or 1.",
    )


def _switch(name: str, default: str, fix: str) -> bool:
    """A setting that is on unless set to an off-word; anything else but an on-word is
    the default, with one warning that says ``default`` and ``fix``."""
    text = os.environ.get(name, "").strip().lower()
    if text in _OFF:
        return False
    if text and text not in _ON:
        _unusable(name, text, "is neither on nor off", default, fix)
    return True


def tier_location(url: str) -> Path | None:
    """The local folder of copies in front of the remote store ``url``; None when
    ``NBCACHE_TIER`` is off.

    Default: ``$XDG_CACHE_HOME/nbcache/tier/<digest of the URL>`` (``~/.cache/...``).
    """
    chosen = os.environ.get("NBCACHE_TIER", "").strip()
    if chosen.lower() in _OFF:
        return None
    if not chosen:
        cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        chosen = os.path.join(cache_home, "nbcache", "tier")
    return Path(chosen).expanduser() / hashlib.sha256(url.encode()).hexdigest()[:16]


def lock_url() -> str | None:
    """``NBCACHE_LOCK_URL``: the Redis server leases are taken from, or None (the store's own)."""
    return os.environ.get("NBCACHE_LOCK_URL", "").strip() or None


def unusable_lock_url(url: str, why: str) -> None:
    """Say once that ``NBCACHE_LOCK_URL`` cannot be used and leases come from the store."""
    _unusable(
        "NBCACHE_LOCK_URL",
        url,
        f"cannot be used ({why})",
        "leases are taken in the store itself",
        'Install redis-py (`pip install "nbcache[redis]"`), fix the URL '
        "(redis://host:port/0), or unset it.",
    )


def auto_mode() -> str | None:
    """``NBCACHE_AUTO``: ``"on"`` (1/on/yes) caches every cell of a kernel that loads
    nbcache, ``"lazy"`` also restores by recorded digests (whole-notebook runs); None
    when unset or off. Anything else is off, with one warning."""
    text = os.environ.get("NBCACHE_AUTO", "").strip().lower()
    if text in _ON:
        return "on"
    if text == "lazy":
        return "lazy"
    if text and text not in _OFF:
        _unusable(
            "NBCACHE_AUTO",
            text,
            "is neither on, lazy nor off",
            "auto mode is off",
            "Set it to 1 to cache every cell, or unset it.",
        )
    return None


def auto_min_seconds() -> float | None:
    """``NBCACHE_AUTO_MIN_SECONDS``: in auto mode, store every cell that ran this long;
    None (unset) is the cost-aware rule. A value that is not a number is unset."""
    text = os.environ.get("NBCACHE_AUTO_MIN_SECONDS", "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0 or value != value:
        _unusable(
            "NBCACHE_AUTO_MIN_SECONDS",
            text,
            "is not a number of seconds",
            "the cost-aware rule decides what is stored",
            "Set it to 0 to store every cell, or unset it.",
        )
        return None
    return value


def auto_log() -> str | None:
    """``NBCACHE_AUTO_LOG``: the file auto mode appends each cell's outcome to."""
    return os.environ.get("NBCACHE_AUTO_LOG", "").strip() or None


def secret() -> str | None:
    """``NBCACHE_SECRET``: the secret entries are signed with, or None (the secret file's);
    :func:`nbcache.entry.signing.load_secret` checks its strength."""
    return os.environ.get("NBCACHE_SECRET") or None


def dask_address() -> str | None:
    """``NBCACHE_DASK``: the dask scheduler to run on (``tcp://host:port``, or ``local``
    for a cluster nbcache starts), or None."""
    return os.environ.get("NBCACHE_DASK", "").strip() or None


def widgets_forced() -> bool | None:
    """``NBCACHE_WIDGETS``: True (1/on) or False (0/off) overrides whether widgets are
    shown; None (unset, or anything else) leaves it to the shell."""
    text = os.environ.get("NBCACHE_WIDGETS", "").strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    return None
