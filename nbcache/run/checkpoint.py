"""Resumable cells: checkpoints taken at a cell's outermost progress loop, and resume.

A running cell installs a :class:`Checkpointer` as this thread's loop hook
(:func:`nbcache.tasks.task.loop_hook`); :func:`nbcache.progress` calls it when
its loop starts, after every step, and when it ends.  Nothing of this runs
unless the body loops over ``progress(...)``.

- **A snapshot** is taken on the loop's thread at a step boundary, when the
  policy says it is due: the variables the body bound or changed so far (as a
  finished entry would keep them), the names it deleted, the output it showed
  inside the loop, the loop's step, and the global generators' states.  It is
  pickled there and its large buffers copied, so the loop may go on changing
  its arrays at once.
- **A writer** (one thread per cell run, one write at a time) stores it under
  the checkpoint key (:func:`checkpoint_key`, never a cell's key); a newer
  snapshot replaces one that has not started writing, and while a write runs
  no new snapshot is taken: a slow disk never piles up behind the loop.
- **Resume**: when the loop of a run with the same key starts and a checkpoint
  is stored, its variables and the generators' states are put into the
  namespace (after the code before the loop ran again, so ``total = 0`` there
  does not undo the restored total), its output is shown again, and
  ``progress`` skips the steps already done.
- **Done**: a run whose body ends without an exception removes the
  checkpoint (its entry replaces it); ``-f`` discards it.
- **Elsewhere**: a background cell on a process pool or dask checkpoints in the
  worker, into the kernel's store (:class:`Remote` says where, and whose secret
  signs): a re-run, or dask running the task again after its worker died, resumes
  there.  A worker whose secret is not the kernel's writes none (the kernel would
  refuse them) and says so.
- **Told**: a run that resumed tells ``report`` (a ``resumed`` :class:`CellReport`,
  whose :class:`Resume` says ``resumed at step 412 of 1000, saved 3 min ago``): the
  shell shows it as a status line, a background cell on its card.

The policy (``--checkpoint``, :mod:`nbcache.run.snapshots`): ``auto`` (the default)
takes a snapshot when the loop ran at least ``FLOOR`` seconds since the last one,
and so rarely that snapshots take at most ``SHARE`` of the loop's time and writes
at most ``WRITE_SHARE`` of the writer's, but at least every ``CEILING``
seconds; a duration (``10m``) takes one that often; ``off`` none.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import xxhash

from ..cache.core import Cache
from ..cache.default import open_store
from ..entry.pickling import Pickled, dump_parts
from ..entry.signing import Signer, load_secret
from ..errors import CacheError, warn
from ..settings import max_size
from ..tasks.task import follow_tqdm, loop_hook
from .cellrun import CellRun, Made, entry_of, failure, put_back
from .effects import Effects
from .files import FileReads
from .output import OutputLog
from .records import Checkpoint
from .report import CellReport, Resume
from .snapshots import ASK, CHECKPOINT_NAME, Policy, Snapshot, Writer, remove

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "Remote",
    "checkpoint_key",
    "checkpointing",
    "remote_checkpoints",
    "worker_cache",
]

_WAIT_EARLIER = 60.0  # seconds a run waits for the last write of the run before it


class CheckpointError(CacheError):
    """A worker cannot write a cell's checkpoints (the cell still runs, without them)."""


def checkpoint_key(key: str) -> str:
    """Where a cell's checkpoint is stored: derived from its key, never a cell's key."""
    return xxhash.xxh3_128_hexdigest(f"checkpoint:{key}".encode())


@dataclass(frozen=True)
class Found:
    """A checkpoint found for this run, with when it was written and its size."""

    state: Checkpoint
    created: float
    size: int


# Writers of runs that ended (raised, were interrupted) and may still be writing: a run
# of the same cell waits for them before it looks for a checkpoint.
_writers: dict[str, Writer] = {}
_writers_lock = threading.Lock()


class Checkpointer:
    """One cell run's checkpoints: the loop hook ``progress`` calls (see the module doc).

    ``namespace`` is where the body runs (the notebook's, or a background cell's
    copy), ``before`` what it held when the body started, ``log`` the output so
    far, ``outside`` the outside state at the start.
    """

    def __init__(
        self,
        cache: Cache,
        run: CellRun,
        namespace: dict[str, Any],
        before: dict[str, int],
        log: OutputLog,
        outside: Effects,
        *,
        publish: Callable[..., None] | None = None,
        show: Callable[..., None] | None = None,
        report: Callable[[CellReport], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.cache = cache
        self.run = run
        self.namespace = namespace
        self.before = before
        self.log = log
        self.outside = outside
        self.key = checkpoint_key(run.key.key)
        self.policy = Policy.of(run.options.checkpoint)
        self._publish = publish or (lambda data, metadata, **shown: None)
        self._show = show  # a background cell's card: output goes there, not to a stream
        self._report = report  # where a resume is told (the shell's status line, a card)
        self._clock = clock
        self._loops = 0  # outermost loops entered so far
        self._loop: int | None = None  # the ordinal of the loop running now
        self._resume: Found | None = None  # a checkpoint not yet applied
        self._looked = False
        self._entered_at = 0.0
        self._last = 0.0
        self._total: int | None = None
        self._outputs_at = (0, 0)  # where the loop's output starts in the log
        self._seconds_before = 0.0  # loop seconds a resumed checkpoint had done
        self._broken = False
        self.resumed_at: int | None = None  # the step a resumed run started from
        self.resumed: Resume | None = None  # where and from what a resumed run started
        self.resume_seconds: float | None = None  # finding and restoring its checkpoint
        self.pauses: list[float] = []  # loop seconds each snapshot took
        self.writer: Writer | None = None

    @property
    def earlier_seconds(self) -> float:
        """Loop seconds the runs before this one did, when this run resumed (else 0)."""
        return self._seconds_before if self.resumed_at is not None else 0.0

    # -- the hook -------------------------------------------------------------------

    def enter(self, total: int | None) -> int | None:
        """A progress loop starts: how many steps it skips; None: not ours (nested, off)."""
        if self._loop is not None or self.policy is None or self._broken:
            return None
        ordinal, self._loops = self._loops, self._loops + 1
        self._loop, self._total = ordinal, total
        self._entered_at = self._last = self._clock()
        self._outputs_at = _mark(self.log.events)
        if not self._looked:
            self._looked = True
            self._resume = self._find()
        skip = 0
        if self._resume is not None and self._resume.state.loop == ordinal:
            state, self._resume = self._resume, None
            skip = self._apply(state)
            self.resume_seconds = self._clock() - self._entered_at
            self._tell(state)
        if self.writer is None:
            self.writer = Writer(self.cache, self.key, self.policy)
            with _writers_lock:
                _writers[self.key] = self.writer
        return skip

    def after(self, step: int, force: bool = False) -> None:
        """Step ``step`` of the loop is done: take a snapshot if one is due."""
        if self.policy is None or self._broken or self.writer is None:
            return
        if self._resume is not None:
            return  # an earlier loop of a resumed run: its checkpoint is further on
        now = self._clock()
        if not (force or self.policy.due(now - self._last)) or self.writer.busy:
            return
        self._last = now
        snapshot = self._snapshot(step, now)
        self._last = self._clock()
        self.pauses.append(self._last - now)
        if snapshot is not None:
            self.policy.snapshot_cost = self._last - now
            self.writer.submit(snapshot)

    def leave(self) -> None:
        self._loop = None

    # -- the runner's -----------------------------------------------------------------

    def finished(self) -> None:
        """The body ended: its entry replaces the checkpoint (only if a loop ran)."""
        if self._loops == 0:
            return
        writer = self.writer or Writer(self.cache, self.key, Policy())
        self.writer = writer
        writer.close()

    def settle(self, timeout: float = _WAIT_EARLIER) -> None:
        """Wait (at most ``timeout``) for the write or removal under way: a worker does
        before it lets go, since the next run may start in another process."""
        if self.writer is not None:
            self.writer.wait(timeout)

    # -- inside -----------------------------------------------------------------------

    def _find(self) -> Found | None:
        with _writers_lock:
            earlier = _writers.pop(self.key, None)
        if earlier is not None:
            earlier.wait(_WAIT_EARLIER)  # the last write of a run that ended a moment ago
        if self.run.options.force:
            remove(self.cache, self.key)
            return None
        try:
            hit = self.cache.lookup(self.key, ask=ASK)
        except Exception as exc:  # noqa: BLE001 - a checkpoint we cannot read: start over
            warn(f"nbcache: the checkpoint could not be read ({failure(exc)})", stacklevel=4)
            return None
        state = Checkpoint.read(hit.value) if hit is not None else None
        if hit is None or state is None or state.cell != self.run.key.key:
            return None
        # Keyed like an entry: what the loop read until then must be as it was.
        stale = FileReads(dict(state.files), dict(state.paths)).changed()
        settings = state.settings if state.settings is not None else self.outside.settings
        if settings != self.outside.settings:
            stale.append("a setting an earlier cell changed differs")
        if stale:
            remove(self.cache, self.key)
            warn(
                f"nbcache: the checkpoint of this cell is not used, since {stale[0]}; the "
                "loop starts over.",
                stacklevel=4,
            )
            return None
        return Found(state, hit.info.created, hit.size)

    def _apply(self, found: Found) -> int:
        """Put a checkpoint into the namespace, show its output again; the steps done."""
        state = found.state
        put_back(state.entry(), self.namespace)
        before = list(self.log.events)
        if self._show is not None:
            for event in state.outputs:
                self._show(*event)
        else:
            OutputLog(list(state.outputs)).replay(self._publish)
        # What this run showed before the loop, then the loop's output up to the step.
        self.log.events[:] = before + list(state.outputs)
        self._seconds_before = state.seconds
        self.resumed_at = state.step
        age = max(0.0, time.time() - found.created)
        self.resumed = Resume(state.step, state.total, age, self._seconds_before)
        return state.step

    def _tell(self, found: Found) -> None:
        """Say that this run resumed: to ``report``, else (no outlet) as a line of stderr."""
        resumed = self.resumed
        if resumed is None:
            return
        if self._report is None:
            line = f"nbcache: {resumed.text}\n"
            if self._show is not None:
                self._show("stderr", line)
            else:
                sys.stderr.write(line)
            return
        if self.run.options.quiet and not self.run.options.background:
            return  # -q silences a cell's status lines; a card is the task itself
        # The shell shows it through the display publisher the log records: it is not the
        # body's output, so neither the entry nor a checkpoint keeps it.
        mark = _mark(self.log.events)
        self._report(
            CellReport(
                "resumed",
                tuple(found.state.vars),
                self.resume_seconds or 0.0,
                found.size,
                computed_seconds=self._seconds_before,
                computed_at=found.created,
                resumed=resumed,
            )
        )
        _cut(self.log.events, mark)

    def _snapshot(self, step: int, now: float) -> Snapshot | None:
        run = self.run
        changes = self.outside.changes(Effects.now())
        store = self.cache.store
        files = FileReads.so_far([store.location] if store is not None else [])
        made = Made(self.namespace, self.before, self.log, None, 0.0, files, self.outside, changes)
        try:
            entry = entry_of(run.code, run.key, made)
        except Exception as exc:  # noqa: BLE001 - the cell goes on, without checkpoints
            self._give_up(f"its variables could not be gathered ({failure(exc)})")
            return None
        effects = dict(entry.effects)
        effects["random"] = random.getstate()
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            try:
                effects["numpy.random"] = numpy.random.get_state()
            except Exception:  # noqa: BLE001 - no global numpy generator to keep
                pass
        seconds = self._seconds_before + (now - self._entered_at)
        state = Checkpoint(
            run.key.key,
            step,
            entry.vars,
            entry.deleted,
            effects,
            _since(self.log.events, self._outputs_at),
            seconds,
            self._loop,
            self._total,
            # what a resume checks first: the files read so far, the settings then
            files.states,
            files.paths,
            self.outside.settings,
        )
        try:
            pickled = _owned(dump_parts(state.stored(), CHECKPOINT_NAME))
        except Exception as exc:  # noqa: BLE001 - an unpicklable variable: no checkpoints
            self._give_up(failure(exc))
            return None
        label = run.options.name or run.code.first_line
        of = f" of {self._total}" if self._total is not None else ""
        meta = {
            "label": f"partial: {label} (step {step}{of})",
            "identity": run.identity,
            "first_line": run.code.first_line,
            "kind": "checkpoint",
            "cell_key": run.key.key,
            "step": step,
            "total": self._total,
            "compute_seconds": seconds,
            "pinned": False,
        }
        return Snapshot(step, pickled, meta)

    def _give_up(self, why: str) -> None:
        self._broken = True
        warn(f"nbcache: this cell is not checkpointed: {why}", stacklevel=5)


def _owned(pickled: Pickled) -> Pickled:
    """The snapshot with its own copy of every buffer, so the loop may change its arrays."""
    buffers = [memoryview(bytes(buf)) for buf in pickled.buffers]
    return Pickled(pickled.stream, buffers, pickled.by_value)


def _mark(events: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Where the log ends now: its length, and the length of its last text (text written
    next joins that event)."""
    if events and events[-1][0] in ("stdout", "stderr"):
        return len(events), len(events[-1][1])
    return len(events), 0


def _cut(events: list[tuple[Any, ...]], mark: tuple[int, int]) -> None:
    """Drop what was logged since ``mark``."""
    count, text = mark
    del events[count:]
    if count and text:
        kind, joined, *rest = events[count - 1]
        events[count - 1] = (kind, joined[:text], *rest)


def _since(events: list[tuple[Any, ...]], mark: tuple[int, int]) -> list[tuple[Any, ...]]:
    """The events logged since ``mark``."""
    count, text = mark
    out = list(events[count:])
    if count and text and len(events[count - 1][1]) > text:
        kind, joined = events[count - 1][:2]
        out.insert(0, (kind, joined[text:]))
    return out


@contextmanager
def checkpointing(
    cache: Cache,
    run: CellRun,
    namespace: dict[str, Any],
    before: dict[str, int],
    log: OutputLog,
    outside: Effects,
    publish: Callable[..., None] | None = None,
    show: Callable[..., None] | None = None,
    report: Callable[[CellReport], None] | None = None,
) -> Iterator[Checkpointer]:
    """Within the block, progress loops on this thread checkpoint ``run``; after it, call
    ``finished()`` on what it yields once the body ended without an exception.

    When the run resumes, a checkpoint's output is shown again through the streams and
    ``publish`` (rich output), or, given ``show`` (a card's ``output(kind, *payload)``),
    all through ``show``; ``report`` is told that it resumed (without one, a line of
    stderr says so)."""
    checkpointer = Checkpointer(
        cache, run, namespace, before, log, outside, publish=publish, show=show, report=report
    )
    if checkpointer.policy is not None:
        follow_tqdm()  # tqdm loops checkpoint too, whenever the body imports tqdm
    with loop_hook(checkpointer):
        yield checkpointer


# -- checkpoints written by a worker (a process pool, a dask cluster) -----------------


@dataclass(frozen=True)
class Remote:
    """What a worker needs to checkpoint ``run``: the kernel's store, and the public name
    of the kernel's secret (never the secret: the worker must hold the same one)."""

    location: str
    fingerprint: str
    run: CellRun


def remote_checkpoints(cache: Cache, run: CellRun) -> Remote | None:
    """What a worker needs to checkpoint ``run`` into ``cache``'s store; None when it is
    not to (``--checkpoint off``, no store, or a ``memory://`` store, which only this
    process sees)."""
    store = cache.store
    if store is None or store.location.startswith("memory://"):
        return None
    if Policy.of(run.options.checkpoint) is None:
        return None
    try:
        fingerprint = cache.signer.fingerprint
    except CacheError:
        return None
    return Remote(store.location, fingerprint, run)


_worker_caches: dict[tuple[str, str], Cache] = {}
_worker_lock = threading.Lock()


def worker_cache(remote: Remote) -> Cache:
    """The cache a worker writes ``remote``'s checkpoints to: the kernel's store, opened
    in this process (once), signed with this process's secret.

    Raises:
        CheckpointError: the store cannot be opened here, or this process's secret is
            not the kernel's (the kernel would refuse what it signed).
    """
    wanted = (remote.location, remote.fingerprint)
    with _worker_lock:
        found = _worker_caches.get(wanted)
        if found is not None:
            return found
        try:
            signer = Signer(load_secret())
            store = open_store(remote.location)
        except (CacheError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"the store {remote.location} cannot be opened here ({failure(exc)})"
            ) from exc
        if signer.fingerprint != remote.fingerprint:
            raise CheckpointError(
                "this worker's nbcache secret is not the kernel's: set the same NBCACHE_SECRET "
                "(or ~/.config/nbcache/secret) where the workers run"
            )
        found = _worker_caches[wanted] = Cache(store, signer=signer, max_size=max_size())
        return found
