"""The user's secret and the keyed MAC that guards everything that can carry code.

An entry's header and pickle stream are signed with HMAC-SHA256 under the
user's secret.  Only a process that knows the secret can write an entry this
process will unpickle, so a cache folder copied from elsewhere (a cloned
repository, a shared drive written by someone else) cannot run code here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import zlib
from pathlib import Path

from ..errors import StoreError

__all__ = ["MAC_SIZE", "Signer", "default_secret_path", "load_secret"]

MAC_SIZE = 32
_SECRET_BYTES = 32


def default_secret_path() -> Path:
    """``~/.config/nbcache/secret`` (``$XDG_CONFIG_HOME`` is honoured when set)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "nbcache" / "secret"


def load_secret(path: Path | None = None) -> bytes:
    """The secret from ``NBCACHE_SECRET``, else from ``path``, created there on first use.

    The file is created with mode 0600 in one exclusive step, so two processes
    starting at once agree on one secret.

    Raises:
        StoreError: the secret file can neither be read nor created.
    """
    from_env = os.environ.get("NBCACHE_SECRET")
    if from_env:
        return from_env.encode()
    path = path or default_secret_path()
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(
            f"cannot read the nbcache secret at {path}: {exc.strerror}. "
            "Fix its permissions or set NBCACHE_SECRET."
        ) from exc
    try:
        return _create_secret(path)
    except OSError as exc:
        raise StoreError(
            f"cannot create the nbcache secret at {path}: {exc.strerror}. "
            "Set NBCACHE_SECRET to a long random string instead."
        ) from exc


def _read_secret(path: Path) -> bytes:
    data = path.read_bytes().strip()
    if not data:
        raise FileNotFoundError(path)  # an empty file is what a writer killed mid-way leaves
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
    except FileExistsError:
        return _read_secret(path)
    finally:
        os.unlink(tmp)
    return token


def check_fingerprint(claimed: object) -> str | None:
    """``claimed`` if it is a well-formed, undamaged :attr:`Signer.fingerprint`, else None."""
    if not isinstance(claimed, str) or claimed.count(".") != 1:
        return None
    name, check = claimed.split(".")
    return claimed if f"{zlib.crc32(name.encode()):08x}" == check else None


class Signer:
    """HMAC-SHA256 under one secret; streaming, so large pickle streams are never joined."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the nbcache secret cannot be empty")
        self._secret = secret

    @functools.cached_property
    def fingerprint(self) -> str:
        """A public name of the secret: tells whose an entry is without telling anything
        about the secret.  16 hex digits of an HMAC, a dot, and their CRC-32, so a damaged
        name is never taken for another user's (:func:`check_fingerprint`)."""
        name = hmac.new(self._secret, b"nbcache signer fingerprint", hashlib.sha256).hexdigest()
        return f"{name[:16]}.{zlib.crc32(name[:16].encode()):08x}"

    def new(self) -> hmac.HMAC:
        """A fresh MAC to ``update()`` with every signed part, in order."""
        return hmac.new(self._secret, digestmod=hashlib.sha256)

    def sign(self, *parts: bytes | memoryview) -> bytes:
        """The MAC of ``parts`` taken in order."""
        mac = self.new()
        for part in parts:
            mac.update(part)
        return mac.digest()

    @staticmethod
    def matches(expected: bytes, actual: bytes) -> bool:
        """Constant-time comparison, so a forger learns nothing from timing."""
        return hmac.compare_digest(expected, actual)
