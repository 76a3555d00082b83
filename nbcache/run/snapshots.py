"""When a cell's progress loop takes a snapshot (:class:`Policy`), and how snapshots are
written: one writer thread per cell run, one write at a time, a newer snapshot
replacing one that has not started writing (see :mod:`nbcache.run.checkpoint`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ..cache.core import Ask, Cache
from ..entry.pickling import Pickled
from ..errors import CacheError, warn
from ..units import parse_duration
from .cellrun import failure

__all__ = [
    "ASK",
    "CEILING",
    "CHECKPOINT_NAME",
    "FLOOR",
    "SHARE",
    "WRITE_SHARE",
    "Policy",
    "Snapshot",
    "Writer",
    "parse_policy",
    "remove",
]

FLOOR = 10.0  # auto: loop seconds before the first snapshot, and between two
CEILING = 300.0  # auto: loop seconds between two snapshots at most
SHARE = 0.02  # auto: what taking snapshots may cost of the loop's time
WRITE_SHARE = 0.25  # auto: how busy writing them may keep the writer
CHECKPOINT_NAME = "the cell's checkpoint"
ASK = Ask(persist=True, remember=False, name=CHECKPOINT_NAME)  # how checkpoints are read


def parse_policy(text: str | float) -> str | float:
    """``auto``, ``off``, or seconds between checkpoints (``10m``, ``90s``, ``0s``: every step).

    Raises:
        ValueError: neither a word nor a duration.
    """
    if isinstance(text, str) and text.strip().lower() in ("auto", "off"):
        return text.strip().lower()
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"--checkpoint takes auto, off or a duration (10m): {exc}") from exc


@dataclass
class Policy:
    """When a snapshot is due; ``every`` None is the cost-aware default."""

    every: float | None = None
    snapshot_cost: float = 0.0  # loop seconds the last snapshot took
    write_cost: float = 0.0  # writer seconds the last write took

    @classmethod
    def of(cls, choice: str | float) -> Policy | None:
        """The policy for a ``--checkpoint`` value; None for ``off``.

        Raises:
            ValueError: see :func:`parse_policy`.
        """
        choice = parse_policy(choice)
        if choice == "off":
            return None
        return cls(None if choice == "auto" else float(choice))

    @property
    def interval(self) -> float:
        if self.every is not None:
            return self.every
        wanted = max(FLOOR, self.snapshot_cost / SHARE, self.write_cost / WRITE_SHARE)
        return min(CEILING, wanted)

    def due(self, since_last: float) -> bool:
        return since_last >= self.interval


@dataclass(frozen=True)
class Snapshot:
    step: int
    pickled: Pickled
    meta: dict[str, Any]


class Writer:
    """One write at a time on its own thread; a newer snapshot replaces a waiting one."""

    def __init__(self, cache: Cache, key: str, policy: Policy) -> None:
        self._cache = cache
        self._key = key
        self._policy = policy
        self._lock = threading.Lock()
        self._waiting: Snapshot | None = None
        self._writing = False
        self._closed = False  # the run finished: its checkpoint goes, nothing more is written
        self._idle = threading.Event()
        self._idle.set()
        self.written: list[int] = []  # the steps stored, in order (for tests and reports)
        self.dropped = 0

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def submit(self, snapshot: Snapshot) -> None:
        with self._lock:
            if self._closed:
                return
            if self._waiting is not None:
                self.dropped += 1
            self._waiting = snapshot
            if self._writing:
                return
            self._writing = True
            self._idle.clear()
        threading.Thread(target=self._drain, name="nbcache-checkpoint", daemon=True).start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                snapshot, self._waiting = self._waiting, None
                if snapshot is None or self._closed:
                    self._writing = False
                    closed = self._closed
                    break
            start = time.perf_counter()
            try:
                self._cache.overwrite(
                    self._key, None, snapshot.meta, pickled=snapshot.pickled, ask=ASK
                )
                self.written.append(snapshot.step)
            except Exception as exc:  # noqa: BLE001 - a checkpoint never breaks the cell
                warn(f"nbcache: a checkpoint was not written ({failure(exc)})", stacklevel=2)
            self._policy.write_cost = time.perf_counter() - start
        if closed:
            remove(self._cache, self._key)
        self._idle.set()

    def close(self) -> None:
        """The run finished: drop what waits; the checkpoint is removed once no write runs."""
        with self._lock:
            self._closed = True
            self._waiting = None
            writing = self._writing
        if not writing:
            remove(self._cache, self._key)

    def wait(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)


def remove(cache: Cache, key: str) -> None:
    try:
        cache.remove(key)
    except (CacheError, OSError, KeyError):
        pass
