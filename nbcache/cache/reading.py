"""Reading one entry from the store: checked, and every fault a miss with one warning.

A damaged entry is removed (it would fail the same way for everyone); one signed
with another secret stays for its owner; a store that cannot be read is computing
instead.  Nothing here raises into the caller.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from ..entry.buffers import WHOLE_READ, MappedReader
from ..entry.format import EntryInfo, SignedHeader, read_entry, read_header
from ..entry.signing import Signer
from ..errors import (
    CacheError,
    ForeignEntryError,
    IntegrityError,
    StoreError,
    ValueUnpicklingError,
    warn,
)
from ..store.base import Store

__all__ = ["HEADER_WHOLE_READ", "WHOLE_READ", "EntryReader", "WarnOnce"]

R = TypeVar("R")
# A header look reads an entry this small whole (one read); a larger one only where its
# prefix, header and trailer lie, not the value it leaves in the store.
HEADER_WHOLE_READ = 64 << 10
# an entry's checked header, its stored size, and its value when it was loaded: (value,)
_Loaded = tuple[EntryInfo, int, tuple[Any, ...]]


class WarnOnce:
    """One warning per topic until the topic is cleared (the fault went away)."""

    def __init__(self) -> None:
        self._topics: set[str] = set()

    def __call__(self, topic: str, message: str, stacklevel: int = 3) -> None:
        if topic not in self._topics:
            self._topics.add(topic)
            warn(message, stacklevel=stacklevel)

    def clear(self, topic: str) -> None:
        self._topics.discard(topic)


def _whole(f: BinaryIO, size: int) -> BinaryIO:
    """``f``, or for a small entry read from a file (not bytes a store already holds in
    memory), all of it in memory."""
    if size > WHOLE_READ or not isinstance(f, io.RawIOBase) or hasattr(f, "mapped"):
        return f
    data = bytearray(size)
    got = f.readinto(data)
    if got != size:  # a short read: stream it as any entry
        f.seek(0)
        return f
    return MappedReader(data)  # type: ignore[return-value]


class EntryReader:
    """Loads entries of ``store``, checked with the signer ``signer`` gives.

    Into ``unloadable`` it writes, for a function's or cell's identity, why its newest
    entry did not load here (a class renamed since, say), for "why did it miss".
    """

    def __init__(
        self,
        store: Store,
        signer: Callable[[], Signer],
        warn_once: WarnOnce,
        unloadable: dict[str, str],
    ) -> None:
        self.store = store
        self._signer = signer
        self._warn_once = warn_once
        self._unloadable = unloadable
        # entry key -> why it was left alone (another secret's): its header cannot be
        # trusted to name its owner, but "why" knows the key it looked up
        self.foreign: dict[str, str] = {}

    def load(
        self, key: str, name: str, validate: Callable[[EntryInfo], bool] | None = None
    ) -> tuple[EntryInfo, Any, int] | None:
        """The header, value and stored size of ``key``'s entry, or None. ``validate``
        sees the signed header before the value is loaded (False: None)."""

        def read(f: BinaryIO, signer: Signer, size: int) -> tuple[EntryInfo, Any, int] | None:
            checked = read_header(f, signer)
            if validate is not None and not validate(checked.info):
                return None
            return (*self._value(f, key, signer, name, checked), size)

        return self._read(key, read)

    def load_header(
        self,
        key: str,
        validate: Callable[[EntryInfo], bool] | None = None,
        whole: Callable[[EntryInfo], bool] | None = None,
        name: str = "value",
    ) -> _Loaded | None:
        """The checked header and stored size of ``key``'s entry, its value left unread
        (``()``) unless ``whole`` says from the header that it is wanted after all: then
        ``(value,)``, loaded from the same open file, its header not checked again."""

        def read(f: BinaryIO, signer: Signer, size: int) -> _Loaded | None:
            checked = read_header(f, signer)
            info = checked.info
            if validate is not None and not validate(info):
                return None
            if info.key != key:
                raise IntegrityError("the entry is filed under another key")
            if whole is None or not whole(info):
                return info, size, ()
            f.seek(0)
            whole_file = _whole(f, size)  # the file as a lookup reads it (read already: as is)
            return info, size, (self._value(whole_file, key, signer, name, checked)[1],)

        return self._read(key, read, header_only=True)

    def _value(
        self, f: BinaryIO, key: str, signer: Signer, name: str, checked: SignedHeader
    ) -> tuple[EntryInfo, Any]:
        """The entry in ``f`` whose header ``checked`` is, its value loaded."""
        try:
            return read_entry(f, key, signer, name=name, checked=checked)
        except ValueUnpicklingError as exc:
            # its header checked out: "why" can name the entry's owner
            owner = checked.info.meta.get("identity")
            if owner:
                self._unloadable[str(owner)] = str(exc)
            raise

    def _read(
        self,
        key: str,
        read: Callable[[BinaryIO, Signer, int], R | None],
        *,
        header_only: bool = False,
    ) -> R | None:
        """``read`` of the open entry of ``key``: a small one read whole first; for
        ``header_only`` (a header look) only one so small that one read of it all costs
        less than reading where its header lies."""
        try:
            signer = self._signer()
        except CacheError as exc:
            # No secret, no check: nothing is loaded, and no entry is blamed and removed.
            # "write": the put that follows fails the same way and must not warn again.
            self._warn_once("write", f"nbcache: caching goes on in memory only: {exc}", 4)
            return None
        try:
            f = self.store.open_entry(key)
        except KeyError:
            return None
        except StoreError as exc:
            message = f"nbcache: cannot read the store, computing instead: {exc}"
            self._warn_once("read", message, 4)
            return None
        try:
            with f:
                size = f.seek(0, io.SEEK_END)  # what listings show: the whole file
                f.seek(0)
                whole = not header_only or size <= HEADER_WHOLE_READ
                return read(_whole(f, size) if whole else f, signer, size)
        except ForeignEntryError as exc:
            # One warning per other secret, not one per entry or look: a whole notebook
            # on a colleague's store said the same line for every cell. It stays for
            # its owner; "why" names it for each entry.
            message = (
                f"nbcache: ignored the cached entry {key[:12]} (and any other of that "
                f"signer's, said once): {exc}"
            )
            self._warn_once(f"foreign:{exc}", message, 4)
            self.foreign[key] = str(exc)
            return None
        except (CacheError, OSError) as exc:
            self.discard(key, exc, 5)
            return None

    def discard(self, key: str, exc: BaseException, stacklevel: int = 4) -> None:
        """Remove the damaged entry of ``key``, with a warning that says why."""
        message = f"nbcache: ignored and removed the cached entry {key[:12]}: {exc}"
        warn(message, stacklevel=stacklevel)
        try:
            self.store.remove_entry(key)
        except StoreError:
            pass  # a read-only store keeps it; it is refused again next time
