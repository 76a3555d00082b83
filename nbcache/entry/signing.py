"""The user's secret and the keyed MAC that guards everything that can carry code.

An entry's header and pickle stream are signed with keyed BLAKE2b under the
user's secret (entries of the first on-disk format: HMAC-SHA256, still checked).
Only a process that knows the secret can write an entry this process will
unpickle, so a cache folder copied from elsewhere (a cloned repository, a shared
drive written by someone else) cannot run code here.

BLAKE2b is a MAC of its own when keyed (no HMAC construction needed) and is built
into CPython: a fresh kernel's first hit does not pay for OpenSSL's first use.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import hmac
import os
import re
import secrets
import stat
import zlib
from pathlib import Path

from .. import settings
from ..errors import StoreError, warn

__all__ = [
    "MAC_SIZE",
    "MIN_SECRET_BYTES",
    "Signer",
    "default_secret_path",
    "load_secret",
    "stream_digest",
]

MAC_SIZE = 32
# What each MAC is of, so a MAC of one kind of thing is never valid for another.
_ENTRY_PERSON = b"nbcache entry"
_STREAM_PERSON = b"nbcache stream"
_SECRET_BYTES = 32
_FINGERPRINT = re.compile(r"[0-9a-f]{16}\.[0-9a-f]{8}")


def default_secret_path() -> Path:
    """``~/.config/nbcache/secret`` (``$XDG_CONFIG_HOME`` is honoured when set)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "nbcache" / "secret"


def load_secret(path: Path | None = None) -> bytes:
    """The secret from ``NBCACHE_SECRET``, else from ``path``, created there on first use.

    The file is created with mode 0600 in one exclusive step, so two processes
    starting at once agree on one secret.  A secret others can read, or one too
    short to resist guessing, is used with one warning that says how to fix it.

    Raises:
        StoreError: the secret file can neither be read nor created, or is empty.
    """
    from_env = settings.secret()
    if from_env:
        _check_strength(from_env.encode(), "NBCACHE_SECRET")
        return from_env.encode()
    path = path or default_secret_path()
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(
            f"cannot read the nbcache secret at {path}: {exc.strerror or exc}. Fix it (it must "
            "be a file readable by you only) or set NBCACHE_SECRET; caching stays in memory "
            "until then."
        ) from exc
    try:
        return _create_secret(path)
    except FileExistsError:
        return _read_secret(path)  # another process made it between our read and our create
    except OSError as exc:
        raise StoreError(
            f"cannot create the nbcache secret at {path}: {exc.strerror or exc}. Make "
            f"{path.parent} writable, or set NBCACHE_SECRET to a long random string "
            "(`python -c 'import secrets; print(secrets.token_hex(32))'`); caching stays in "
            "memory until then."
        ) from exc


# Below this many bytes a secret can be guessed offline: anybody who can read one entry
# can try candidate secrets against its MAC as fast as HMAC runs.
MIN_SECRET_BYTES = 16
_warned: set[str] = set()


def _warn_once(topic: str, message: str) -> None:
    if topic not in _warned:
        _warned.add(topic)
        warn(message, stacklevel=4)


def _check_strength(secret: bytes, where: str) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        _warn_once(
            f"short:{where}:{hashlib.sha256(secret).hexdigest()}",
            f"nbcache: the secret in {where} is {len(secret)} bytes long, short enough to be "
            f"guessed from any entry it signed; use at least {MIN_SECRET_BYTES} random bytes "
            "(`python -c 'import secrets; print(secrets.token_hex(32))'`).",
        )


def _read_secret(path: Path) -> bytes:
    # O_NONBLOCK: a FIFO planted at the path must not hang the kernel.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if not data:
        # Never a writer killed mid-way: the secret is complete before it is linked in place.
        raise StoreError(
            f"the nbcache secret file {path} is empty. Delete it (nbcache then makes a new "
            "one) or put the team's secret in it; caching stays in memory until then."
        )
    if info.st_mode & 0o077:
        _warn_once(
            f"mode:{path}",
            f"nbcache: the secret {path} can be read by others (mode "
            f"{stat.S_IMODE(info.st_mode):o}), who could then sign entries this kernel "
            f"unpickles: `chmod 600 {path}`.",
        )
    _check_strength(data, str(path))
    return data


def _create_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(_SECRET_BYTES).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process won the race: then theirs is the secret.
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return token


def check_fingerprint(claimed: object) -> str | None:
    """``claimed`` if it is a well-formed, undamaged :attr:`Signer.fingerprint`, else None."""
    # Sixteen hex digits and their CRC, nothing else: the claim is unverified, and it is
    # quoted in a warning, where a forged one could put text of its own (lines, escapes).
    if not isinstance(claimed, str) or _FINGERPRINT.fullmatch(claimed) is None:
        return None
    name, check = claimed.split(".")
    return claimed if f"{zlib.crc32(name.encode()):08x}" == check else None


def stream_digest(stream: bytes | memoryview) -> str:
    """The hex BLAKE2b-256 of a pickle stream, which a signed header pins it by."""
    return hashlib.blake2b(stream, digest_size=32, person=_STREAM_PERSON).hexdigest()


class Signer:
    """Keyed BLAKE2b under one secret (HMAC-SHA256 for entries of the first format)."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the nbcache secret cannot be empty")
        self._secret = secret
        # BLAKE2b takes keys of at most 64 bytes; a longer secret (NBCACHE_SECRET may be
        # any length) is hashed to one, as HMAC does with a key longer than its block.
        self._key = (
            secret
            if len(secret) <= hashlib.blake2b.MAX_KEY_SIZE
            else hashlib.blake2b(secret, person=b"nbcache long key").digest()
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """A public name of the secret: tells whose an entry is without telling anything
        about the secret.  16 hex digits of an HMAC, a dot, and their CRC-32, so a damaged
        name is never taken for another user's (:func:`check_fingerprint`)."""
        name = hmac.new(self._secret, b"nbcache signer fingerprint", hashlib.sha256).hexdigest()
        return f"{name[:16]}.{zlib.crc32(name[:16].encode()):08x}"

    def sign(self, *parts: bytes | memoryview) -> bytes:
        """The MAC of ``parts`` taken in order: what entries of the current format carry."""
        mac = hashlib.blake2b(key=self._key, digest_size=MAC_SIZE, person=_ENTRY_PERSON)
        for part in parts:
            mac.update(part)
        return mac.digest()

    def sign_hmac_sha256(self, *parts: bytes | memoryview) -> bytes:
        """The HMAC-SHA256 of ``parts`` taken in order: what entries of format 1 carry."""
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        return mac.digest()

    @staticmethod
    def matches(expected: bytes, actual: bytes) -> bool:
        """Constant-time comparison, so a forger learns nothing from timing."""
        return hmac.compare_digest(expected, actual)
