"""Content digests of values: deterministic, type-tagged, linear in the object graph.

``digest(value)`` is the same for equal values in any process and different
for values a cell could tell apart: type, shape, order wherever iteration
order is observable (lists, tuples and dicts of every kind; sets stay
order-free), dtype, subclass, mask, data.  Array and frame buffers go
straight through XXH3-128 at memory speed, never through a pickle stream.

How it walks.  Every object that is not a plain scalar gets a 16-byte digest
of its own, made once per ``digest`` call and remembered by identity, so a
value whose parts are shared (a DAG, a matplotlib figure, a fitted forest)
costs time linear in its distinct objects, not in the paths that reach them;
a small leaf (a short list, tuple or dict of scalars) is written into its
parent as its encoding instead (``node.Inline``).  Rules are generators that
yield the parts they contain; one loop drives them with an explicit stack, so
a list nested 3000 deep or a linked list of a million nodes never meets
Python's recursion limit.  A part met again while it is being hashed (a cycle)
is a back reference, so many levels up; met again elsewhere, by its place (``node.within``).

An int that is the ``id()`` of a part of the value (seaborn's ``Plot`` keeps
one per data vector) is hashed as a reference to that part's content, not as
the address, which changes with every process (:meth:`_Walk.address`).  The
walk notes the ints that could be ids and keeps the parts it met; only when one
of those ints is the id of one of those parts is the value walked again.

Long containers are encoded many items at once, in C (``keys/batch.py``):
their scalars by type, as columns, and their small leaves together; the walk
enters only what holds objects.

Rules live in one registry (:func:`register`), asked in order, first match
wins, the answer remembered per type.  This module is the walk and the
registry only (what a rule writes into, and plain scalars, are
``keys/node.py``); the rules are families in modules of their own, which import
this one and nothing of each other: ``keys/rules/`` (containers, live
handles, installed code by name, numpy, and objects through the reduce
protocol, the fallback), ``keys/frames.py``, ``keys/arrays.py`` and
``keys/code.py``.  ``nbcache.keys`` registers them all, in one ordered list,
when it is imported, which happens before any of its modules can be used.
Rules match on ``type(value)``, never ``isinstance``, which a
``Mock(spec=ndarray)`` answers with a lie.

Whatever goes wrong inside a digest surfaces as one :class:`KeyPicklingError`
(chained to its cause) naming the path to the part and its type; a live
handle (figure, widget, open file, lock, generator) raises the subclass
:class:`LiveHandleError` at once; a walk that outgrows its budget of time or
objects raises :class:`HashBudgetError`.
"""

from __future__ import annotations

import gc
import struct
import threading
import time
from collections import Counter
from typing import Any

import xxhash

from ..errors import KeyPicklingError
from .classes import Matcher, type_name
from .node import ATOMS, Inline, Node, Parts, Rule, Step, Unfed, numpy, sealed, spelled, within
from .standin import StandIn
from .versions import module_version

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "DEFAULT_MAX_SECONDS",
    "HASH_VERSION",
    "HashBudgetError",
    "LiveHandleError",
    "digest",
    "drawn_on",
    "module_version",
    "register",
    "visits",
]

# Part of every key: bump it when a rule below changes, so old keys miss
# instead of colliding.  Golden digests in the tests pin the rules.
# v2: one digest per object (identity memo, explicit stack), ordered dicts,
# subclass state, installed code by name and version.
# v3: a small leaf (a short list, tuple or dict of scalars) is written into its
# parent as its own encoding, not as its digest (``node.Inline``).
HASH_VERSION = 3

# The budget of one digest.  Generous on purpose: hashing runs at memory speed
# (10 GB of arrays in about a second, a million small objects in about one),
# so only something pathological reaches it, and then one warning beats a cell
# that seems to hang.  Callers may pass their own.
DEFAULT_MAX_SECONDS = 30.0
DEFAULT_MAX_OBJECTS = 20_000_000

_CHECK_EVERY = 1 << 12  # objects between two looks at the clock
_Q = struct.Struct("<Q").pack


class LiveHandleError(KeyPicklingError):
    """A value is a live handle (figure, widget, open file, lock, ...): it has no content to key.

    ``drawing`` is True for figures, axes and widgets, which cells draw on: the shell
    runs such a cell quietly instead of warning (see :func:`drawn_on`).
    """

    drawing = False


def drawn_on(exc: BaseException) -> bool:
    """Whether ``exc``, or what it was raised from, refused a figure, axes or widget."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, LiveHandleError) and seen.drawing:
            return True
        seen = seen.__cause__
    return False


class HashBudgetError(KeyPicklingError):
    """A value took longer, or had more objects, than a digest may spend on it."""


# -- the public entry points ----------------------------------------------------


def digest(
    value: Any,
    *,
    typed: bool = True,
    name: str = "value",
    max_seconds: float | None = None,
    max_objects: int | None = None,
) -> str:
    """The hex digest (32 characters) of ``value``'s content.

    Args:
        value: any value.
        typed: when False, equal numbers of different types (``1``, ``1.0``,
            ``True``) get one digest, as ``functools.lru_cache(typed=False)``
            treats them as one argument.
        name: what to call ``value`` in an error message.
        max_seconds: time budget (default :data:`DEFAULT_MAX_SECONDS`); a
            digest started inside another one shares the outer deadline.
        max_objects: object budget (default :data:`DEFAULT_MAX_OBJECTS`).

    Raises:
        KeyPicklingError: some part of ``value`` cannot be hashed (the message
            names the path to it and its type), or hashing it would exceed
            the budget (:class:`HashBudgetError`), or it is a live handle
            (:class:`LiveHandleError`).  Never anything else.
    """
    if type(value) is StandIn:  # a value not loaded yet: what it hashed to when made
        return value.digest
    encode = ATOMS.get(type(value))
    if encode is not None:  # a plain scalar, the commonest argument: no walk to set up
        node = Node(_SCALAR_WALKS[typed])
        encode(node, value)
        return _hexdigest(node.finish())
    walk = _Walk(typed, name, max_seconds, max_objects)
    return walk.hexdigest(value)


def visits(value: Any, *, typed: bool = True) -> Counter[int]:
    """How often one ``digest(value)`` hashes each object that is not a scalar, by id.

    For tests that bound the work: an object that many paths reach is hashed
    once, save a small container of scalars that long containers hold (see
    ``keys/batch.py``): once for each reference to it there.  Walks again to
    replace ids (see ``_Walk.address``) are counted too.
    """
    counts: Counter[int] = Counter()
    walk = _Walk(typed, "value", None, None)
    walk.visits = counts
    walk.hexdigest(value)
    return counts


def _hexdigest(root: bytes) -> str:
    return str(xxhash.xxh3_128_hexdigest(b"nbcache-hash/%d\x00" % HASH_VERSION + root))


# -- the walk ------------------------------------------------------------------------


class _Frame:
    __slots__ = ("gen", "key", "low", "node", "obj", "parts", "serial", "step", "unfed")

    def __init__(self, obj: Any, node: Node, gen: Parts, depth: int, serial: int) -> None:
        self.obj = obj
        self.key = id(obj)
        self.node = node
        self.gen = gen
        self.step: Step | None = None  # the part being hashed now
        self.unfed: Unfed | None = None
        self.low, self.parts, self.serial = depth, 0, serial  # see ``node.within``


_local = threading.local()


class _Walk:
    """One digest: the identity memo, the stack of open objects, the budget."""

    def __init__(
        self, typed: bool, name: str, max_seconds: float | None, max_objects: int | None
    ) -> None:
        self.typed = typed
        self.name = name
        self.memo: dict[int, bytes] = {}
        self.leaves: dict[int, Inline] = {}  # small leaves entered, by id (not digests)
        self.keep: list[Any] = []  # memoised objects stay alive, so no id is reused meanwhile
        self.open: dict[int, int] = {}  # id -> depth of objects being hashed now (cycles)
        self.placed: dict[int, tuple[int, int, int, int]] = {}  # see ``node.within``
        self.paths: dict[int, tuple[int, int, bytes, int]] = {}
        self.frames: list[_Frame] = []
        # id() values kept as ints (see ``address``): noted, then matched to the parts seen.
        self.noted: set[int] | None = set()
        self.noted_runs: list[Any] = []  # numpy arrays of ints noted many at once
        self.seen: list[Any] | None = []  # parts met: objects entered, strs, bytes
        self.seen_runs: list[list[Any]] = []  # parts met many at once
        self.found: dict[int, Any] = {}
        self.refs: dict[int, bytes] | None = None
        self.visits: Counter[int] | None = None
        self.objects = 0
        self.max_objects = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
        outer = getattr(_local, "deadline", None)
        seconds = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
        self.max_seconds = seconds
        self.deadline = time.monotonic() + seconds
        if outer is not None:
            self.deadline = min(self.deadline, outer)

    def check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise HashBudgetError(
                f"hashing it took longer than {self.max_seconds:g} s, so it cannot be part of "
                "the key"
            )

    def hexdigest(self, value: Any) -> str:
        outer = getattr(_local, "deadline", None)
        _local.deadline = self.deadline
        # The walk allocates a few small tracked objects per part it visits;
        # with the collector on, its full collections rescan the whole value
        # again and again, and a million-object digest grows superlinearly.
        collecting = gc.isenabled()
        gc.disable()
        try:
            root = self._run(value)
            found = self._found()
            if found:
                root = self._with_references(value, found)
        except KeyPicklingError as exc:
            if getattr(exc, "nbcache_located", False):
                raise
            raise self._located(type(exc), str(exc), exc) from exc
        except Exception as exc:
            raise self._located(KeyPicklingError, f"{type(exc).__name__}: {exc}", exc) from exc
        finally:
            _local.deadline = outer
            if collecting:
                gc.enable()
        return _hexdigest(root)

    def _located(self, cls: type[KeyPicklingError], reason: str, exc: Exception) -> Exception:
        # Over budget is the whole input's fault, not the part it stopped at.
        path, culprit = (self.name, self.root) if cls is HashBudgetError else self._path()
        what = type_name(type(culprit))
        err = cls(f"cannot hash `{path}` ({what}) for the cache key: {reason.rstrip('.')}.")
        err.nbcache_located = True  # type: ignore[attr-defined]
        return err

    def _path(self) -> tuple[str, Any]:
        """The path to the innermost part being hashed, and that part."""
        pending = self._pending is not None
        frames = self.frames if pending else self.frames[:-1]
        culprit = self._pending if pending else (self.frames[-1].obj if self.frames else None)
        path = self.name
        for frame in frames:
            if frame.step is not None:
                path += spelled(frame.step)
        return path, culprit

    _pending: Any = None  # the part being entered now, for error messages

    def address(self, n: Node, value: int) -> bool:
        """Write ``value`` as a reference if it is the ``id()`` of a part; else note it.

        Libraries keep ``id()`` of what they hold as plain ints, a number that
        changes with every process: the key would never restore after a
        restart.  Such an int hashes as "the identity of a part whose content
        is D", blind to aliasing as every key is.  Only a value holding an int
        in the range of addresses takes a second walk to look for the parts,
        and a third when one is found.
        """
        refs = self.refs
        if refs is not None and value in self.found:
            n.add(b"R" + refs.get(value, b""))  # empty inside a part's own digest: no recursion
            return True
        if self.noted is not None:
            self.noted.add(value)
        return False

    def note_run(self, values: Any) -> None:
        if self.noted is not None:
            self.noted_runs.append(values)

    def met_all(self, values: list[Any]) -> None:
        if self.seen is not None:
            self.seen_runs.append(values)

    def entered(self, objects: list[Any]) -> None:
        self.objects += len(objects)
        if self.objects > self.max_objects:
            raise HashBudgetError(
                f"it has more than {self.max_objects:,} objects, so it cannot be part of the key"
            )
        self.check_clock()
        self.met_all(objects)
        if self.visits is not None:
            self.visits.update(map(id, objects))

    def remember(self, objects: list[Any], digests: list[bytes]) -> None:
        self.memo.update(zip(map(id, objects), digests, strict=True))
        self.keep += objects

    def _found(self) -> dict[int, Any]:
        """The parts seen whose ids are among the ints noted: what those ints name.

        Every part the walk met is still alive (the value, ``keep``, ``seen``), so
        no id was reused meanwhile.  Usually no noted int names a part: numbers
        that merely look like addresses cost this look-up and nothing more.
        """
        if not self.noted and not self.noted_runs:
            return {}
        parts = {id(part): part for part in self.seen or ()}
        for run in self.seen_runs:
            parts.update(zip(map(id, run), run, strict=True))
        found = {key: parts[key] for key in self.noted or () if key in parts}
        if self.noted_runs:
            np = numpy()
            runs = np.concatenate(self.noted_runs)
            # A table of the parts' ids, hashed into bits, drops most numbers in
            # C; the few left are looked up exactly.
            size = 1 << min(26, max(12, (4 * len(parts)).bit_length()))
            table = np.zeros(size, bool)
            table[(np.fromiter(parts, np.int64, len(parts)) >> 3) & (size - 1)] = True
            for key in runs[table[(runs >> 3) & (size - 1)]].tolist():
                if key in parts:
                    found[key] = parts[key]
        return found

    def _with_references(self, value: Any, found: dict[int, Any]) -> bytes:
        """The root digest again, with the ints that are ids of parts written as references."""
        # Each part referred to, hashed with references marked but not followed
        # (a part may hold its own id), then the whole with them filled in.
        marks = {key: self._again(found=found, refs={})._run(part) for key, part in found.items()}
        return self._again(found=found, refs=marks)._run(value)

    def _again(self, **state: Any) -> _Walk:
        walk = _Walk(self.typed, self.name, self.max_seconds, self.max_objects)
        walk.deadline = self.deadline
        walk.noted = walk.seen = None
        walk.visits = self.visits
        for attr, current in state.items():
            setattr(walk, attr, current)
        return walk

    root: Any = None

    def _run(self, value: Any) -> bytes:
        self.root = value
        node = Node(self)
        if node.atom(value):
            return node.finish()
        result = self._enter(value)
        while self.frames:
            top = self.frames[-1]
            try:
                request = top.gen.send(result)  # type: ignore[arg-type]
            except StopIteration:
                self.frames.pop()
                del self.open[top.key]
                result = top.node.finish()
                self.keep.append(top.obj)
                parent = self.frames[-1] if self.frames else None
                if parent is not None and top.low < len(self.frames):  # true only here
                    parent.low = min(parent.low, top.low)
                    if (at := parent.unfed.place if parent.unfed else parent.parts) >= 0:
                        self.placed[top.key] = (parent.key, at, parent.serial, top.serial)
                else:
                    self.memo[top.key] = result
                if parent is not None and not parent.unfed:
                    parent.node.add(result)
                continue
            top.parts += 1
            if type(request) is Unfed:
                child, top.step, top.unfed = request.value, request.step, request
            else:
                (child, top.step), top.unfed = request, None  # type: ignore[misc]
            part = self._enter(child)
            if part is not None:
                if not top.unfed:
                    top.node.add(part)
                result = sealed(part) if top.unfed else part  # a set sorts digests
            else:
                result = None
        assert result is not None
        return sealed(result)

    def _enter(self, value: Any) -> bytes | None:
        """``value``'s digest (or small leaf's encoding) if known at once, else None with its
        frame pushed."""
        encode = ATOMS.get(type(value))
        if encode is not None:
            node = Node(self)
            encode(node, value)
            return node.finish()
        key = id(value)
        known = self.memo.get(key) or self.leaves.get(key)
        if known is not None:
            return known
        depth = self.open.get(key)
        if depth is not None:
            self.frames[-1].low = min(self.frames[-1].low, depth)
            return bytes(xxhash.xxh3_128_digest(b"back\x00" + _Q(len(self.frames) - depth)))
        if key in self.placed and (found := within(self, key)):
            return found
        self._pending = value
        if self.seen is not None:
            self.seen.append(value)  # alive until the walk ends: its id stays its own
        if self.visits is not None:
            self.visits[key] += 1
        self.objects += 1
        if self.objects > self.max_objects:
            raise HashBudgetError(
                f"it has more than {self.max_objects:,} objects, so it cannot be part of the key"
            )
        if not self.objects % _CHECK_EVERY:
            self.check_clock()
        node = Node(self)
        gen = _rule_for(type(value))(node, value)
        self._pending = None
        if gen is None:  # a leaf: remembered too, so every object is hashed once
            self.keep.append(value)
            if (inline := node.inline(value)) is not None:
                self.leaves[key] = inline
                return inline
            result = self.memo[key] = node.finish()
            return result
        self.open[key] = depth = len(self.frames)
        self.frames.append(_Frame(value, node, gen, depth, self.objects))
        return None


# Walks that plain scalars are encoded under: only ``typed`` is read, and the clock
# never runs out (a scalar is one object; a long string streams in slices).
_SCALAR_WALKS = {
    flag: _Walk(flag, "value", max_seconds=float("inf"), max_objects=1) for flag in (False, True)
}
for _scalar_walk in _SCALAR_WALKS.values():
    _scalar_walk.noted = _scalar_walk.seen = None  # shared by every call: a lone int names no part


# -- the registry ------------------------------------------------------------------

_REGISTERED: list[tuple[Matcher, Rule]] = []
_BY_TYPE: dict[type, Rule] = {}
_registry_lock = threading.Lock()


def register(*rules: tuple[Matcher, Rule]) -> None:
    """Append rules to the registry, in order; each matches on the value's type.

    A matcher must only look at the class (it is asked once per type, and the
    answer is remembered), and must not import anything: a value of a
    library's type cannot exist before the library is imported.
    """
    with _registry_lock:
        for rule in rules:
            if rule not in _REGISTERED:
                _REGISTERED.append(rule)
        _BY_TYPE.clear()


def _rule_for(cls: type) -> Rule:
    rule = _BY_TYPE.get(cls)
    if rule is not None:
        return rule
    for matches, candidate in _REGISTERED:
        if matches(cls):
            rule = candidate
            break
    else:
        rule = _no_rule
    _BY_TYPE[cls] = rule
    return rule


def _no_rule(n: Node, value: Any) -> None:
    raise KeyPicklingError("no hashing rule matches it (import nbcache.keys to register them)")
