"""Content digests of values: deterministic, type-tagged, linear in the object graph.

``digest(value)`` is the same for equal values in any process and different
for values a cell could tell apart: type, shape, order wherever iteration
order is observable (lists, tuples and dicts of every kind; sets stay
order-free), dtype, subclass, mask, data.  Array and frame buffers go
straight through XXH3-128 at memory speed, never through a pickle stream.

How it walks.  Every object that is not a plain scalar gets a 16-byte digest
of its own, made once per ``digest`` call and remembered by identity, so a
value whose parts are shared (a DAG, a matplotlib figure, a fitted forest)
costs time linear in its distinct objects, not in the paths that reach them.
Rules are generators that yield the parts they contain; one loop drives them
with an explicit stack, so a list nested 3000 deep or a linked list of a
million nodes never meets Python's recursion limit.  A part met again while
it is still being hashed (a cycle) counts as a back reference: how many
levels up it points.

Rules live in one registry.  This module holds the rules for builtins,
numpy, installed code and the reduce-protocol fallback; ``keys/frames.py``,
``keys/arrays.py`` and ``keys/code.py`` add theirs through :func:`register`
(``nbcache.keys`` does it when it is imported), so none of them import each
other in a circle.  Rules match on ``type(value)``, never ``isinstance``,
which a ``Mock(spec=ndarray)`` answers with a lie.

Objects with no rule are walked through the public reduce protocol
(``copyreg.dispatch_table``, then ``__reduce_ex__(4)``): the same parts pickle
would save, hashed by these rules, plus the instance ``__dict__`` when the
reduction leaves it out.  A real pickle stream is not deterministic:
``reducer_override`` is never called for sets, whose pickled order follows
the per-process string hash seed.

Whatever goes wrong inside a digest surfaces as one :class:`KeyPicklingError`
(chained to its cause) naming the path to the part and its type; a live
handle (figure, widget, open file, lock, generator) raises the subclass
:class:`LiveHandleError` at once; a walk that outgrows its budget of time or
objects raises :class:`HashBudgetError`.
"""

from __future__ import annotations

import copyreg
import gc
import io
import math
import socket
import struct
import sys
import threading
import time
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import xxhash

from ..errors import KeyPicklingError

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "DEFAULT_MAX_SECONDS",
    "HASH_VERSION",
    "HashBudgetError",
    "LiveHandleError",
    "Matcher",
    "Node",
    "Request",
    "Rule",
    "Unfed",
    "describe",
    "digest",
    "global_rule",
    "is_live_handle",
    "module_version",
    "ndarray_rule",
    "register",
    "subclass_of",
    "type_name",
]

# Part of every key: bump it when a rule below changes, so old keys miss
# instead of colliding.  Golden digests in the tests pin the rules.
# v2: one digest per object (identity memo, explicit stack), ordered dicts,
# subclass state, installed code by name and version.
HASH_VERSION = 2

# The budget of one digest.  Generous on purpose: hashing runs at memory speed
# (10 GB of arrays in about a second, a million small objects in about one),
# so only something pathological reaches it, and then one warning beats a cell
# that seems to hang.  Callers may pass their own.
DEFAULT_MAX_SECONDS = 30.0
DEFAULT_MAX_OBJECTS = 20_000_000

_CHUNK = 1 << 22  # big buffers go to the hasher in 4 MiB slices, checking the clock
_INLINE = 1 << 16  # buffers above this skip the node's small byte buffer
_CHECK_EVERY = 1 << 12  # objects between two looks at the clock
_REMEMBER_LEAVES = 1 << 12  # bytes above which an object without parts is remembered
_Q = struct.Struct("<Q").pack
_q = struct.Struct("<q").pack
_D = struct.Struct("<d").pack
_NAN = b"\x7f\xf8" + b"\x00" * 6


class LiveHandleError(KeyPicklingError):
    """A value is a live handle (figure, widget, open file, lock, ...): it has no content to key."""


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
    walk = _Walk(typed, name, max_seconds, max_objects)
    return walk.hexdigest(value)


def describe(value: Any) -> dict[str, Any]:
    """A short summary for "why did it miss": type, shape or length where known.

    Never raises: a value with a hostile ``__getattr__`` is described by its type.
    """
    cls = type(value)
    summary: dict[str, Any] = {"type": type_name(cls)}
    try:
        shape = getattr(value, "shape", None) if _has_attr(cls, "shape") else None
        if type(shape) is tuple and all(type(n) is int for n in shape):
            summary["shape"] = list(shape)
        elif cls in (list, tuple, dict, set, frozenset, str, bytes):
            summary["len"] = len(value)
        if cls in (int, float, bool) or (cls is str and len(value) <= 40):
            summary["repr"] = repr(value)
    except Exception:  # noqa: BLE001 - a summary is best effort; the type is always known
        return {"type": summary["type"]}
    return summary


def _has_attr(cls: type, name: str) -> bool:
    return any(name in vars(klass) for klass in cls.__mro__)


def type_name(cls: type) -> str:
    """``module.Qualname`` (bare for builtins), read from the class itself."""
    module = getattr(cls, "__module__", None) or "?"
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    return str(qualname) if module == "builtins" else f"{module}.{qualname}"


def module_version(module_name: str) -> str:
    """The installed version of the distribution providing top-level ``module_name``."""
    top = module_name.partition(".")[0]
    cached = _VERSIONS.get(top)
    if cached is not None:
        return cached
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    if not isinstance(version, str):
        version = _distribution_version(top)
    _VERSIONS[top] = version
    return version


_VERSIONS: dict[str, str] = {}


def _distribution_version(top: str) -> str:
    from importlib import metadata

    if top in sys.stdlib_module_names or top == "builtins":
        return f"python-{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        names = metadata.packages_distributions().get(top, [top])
        return metadata.version(names[0])
    except (metadata.PackageNotFoundError, IndexError, ValueError):
        return "unknown"


# -- nodes: what a rule writes into -----------------------------------------------


@dataclass(frozen=True)
class Unfed:
    """Yielded by a rule that wants a part's digest back without adding it (sets sort them)."""

    value: Any
    step: Step


# A step names a part inside its parent for error messages: an int is an index
# (``[3]``), a str is appended as it is (``.mask``), a 1-tuple holds a key
# (``['name']``).  Paths are only spelled out when something fails.
Step = int | str | tuple[Any]
Request = tuple[Any, Step] | Unfed
Parts = Generator[Request, bytes, None]  # what a rule yields: the parts it contains
Rule = Callable[["Node", Any], Parts | None]


class Node:
    """The digest of one object in the making: rules add tags, bytes and parts' digests."""

    __slots__ = ("_buf", "_h", "_walk")

    def __init__(self, walk: _Walk) -> None:
        self._walk = walk
        self._buf = bytearray()
        self._h: Any = None

    @property
    def typed(self) -> bool:
        return self._walk.typed

    def tag(self, label: bytes) -> None:
        self._buf += label
        self._buf += b"\x00"

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        """Length-prefixed bytes; big buffers stream in slices under the budget's clock."""
        view = memoryview(data)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        self._buf += _Q(view.nbytes)
        if view.nbytes <= _INLINE:
            self._buf += view
            return
        if self._h is None:
            self._h = xxhash.xxh3_128()
        self._h.update(self._buf)
        self._buf = bytearray()
        for start in range(0, view.nbytes, _CHUNK):
            self._h.update(view[start : start + _CHUNK])
            self._walk.check_clock()

    def text(self, value: str) -> None:
        self.raw(value.encode("utf-8", "surrogatepass"))

    def count(self, n: int) -> None:
        self._buf += _q(n)

    def atom(self, value: Any) -> bool:
        """Add a plain scalar inline and return True; return False for anything else."""
        encode = _ATOMS.get(type(value))
        if encode is None:
            return False
        encode(self, value)
        return True

    def add(self, part: bytes) -> None:
        """Add a part's 16-byte digest."""
        self._buf += part

    def finish(self) -> bytes:
        if self._h is None:
            return bytes(xxhash.xxh3_128_digest(self._buf))
        self._h.update(self._buf)
        return bytes(self._h.digest())


def _atom_none(n: Node, value: None) -> None:
    n._buf += b"N"


def _atom_bool(n: Node, value: bool) -> None:
    if n.typed:
        n._buf += b"B\x01" if value else b"B\x00"
    else:
        _atom_int(n, int(value))


def _atom_int(n: Node, value: int) -> None:
    buf = n._buf
    if -(1 << 63) <= value < (1 << 63):
        buf += b"i"
        buf += _q(value)
        return
    # Bytes, not str(): int-to-str is quadratic and refused above 4300 digits.
    data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    buf += b"I"
    buf += _Q(len(data))
    buf += data


def _atom_float(n: Node, value: float) -> None:
    if not n.typed and value.is_integer() and not (value == 0 and math.copysign(1, value) < 0):
        _atom_int(n, int(value))
        return
    n._buf += b"F"
    n._buf += _NAN if math.isnan(value) else _D(value)


def _atom_complex(n: Node, value: complex) -> None:
    n._buf += b"C"
    for part in (value.real, value.imag):
        n._buf += _NAN if math.isnan(part) else _D(part)


def _atom_str(n: Node, value: str) -> None:
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > _INLINE:
        n._buf += b"S"
        n.raw(data)
        return
    buf = n._buf
    buf += b"S"
    buf += _Q(len(data))
    buf += data


def _atom_bytes(n: Node, value: bytes | bytearray) -> None:
    n._buf += b"Y" if type(value) is bytes else b"A"
    if len(value) > _INLINE:
        n.raw(value)
        return
    n._buf += _Q(len(value))
    n._buf += value


# Values hashed inline by value wherever they appear: no identity, no memo.
# Sharing one is unobservable (bytearray aside, whose aliasing keys ignore,
# as they ignore all aliasing: a key is about content).
_ATOMS: dict[type, Callable[[Node, Any], None]] = {
    type(None): _atom_none,
    bool: _atom_bool,
    int: _atom_int,
    float: _atom_float,
    complex: _atom_complex,
    str: _atom_str,
    bytes: _atom_bytes,
    bytearray: _atom_bytes,
}


# -- the walk ------------------------------------------------------------------------


class _Frame:
    __slots__ = ("gen", "key", "node", "obj", "step", "unfed")

    def __init__(self, obj: Any, node: Node, gen: Parts) -> None:
        self.obj = obj
        self.key = id(obj)
        self.node = node
        self.gen = gen
        self.step: Step | None = None  # the part being hashed now
        self.unfed = False


_local = threading.local()


class _Walk:
    """One digest: the identity memo, the stack of open objects, the budget."""

    def __init__(
        self, typed: bool, name: str, max_seconds: float | None, max_objects: int | None
    ) -> None:
        self.typed = typed
        self.name = name
        self.memo: dict[int, bytes] = {}
        self.keep: list[Any] = []  # memoised objects stay alive, so no id is reused meanwhile
        self.open: dict[int, int] = {}  # id -> depth of objects being hashed now (cycles)
        self.frames: list[_Frame] = []
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
        return str(xxhash.xxh3_128_hexdigest(b"nbcache-hash/%d\x00" % HASH_VERSION + root))

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
                path += _spell(frame.step)
        return path, culprit

    _pending: Any = None  # the part being entered now, for error messages

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
                self.memo[top.key] = result
                self.keep.append(top.obj)
                if self.frames:
                    parent = self.frames[-1]
                    if not parent.unfed:
                        parent.node.add(result)
                continue
            if type(request) is Unfed:
                child, top.step, top.unfed = request.value, request.step, True
            else:
                (child, top.step), top.unfed = request, False  # type: ignore[misc]
            part = self._enter(child)
            if part is not None:
                if not top.unfed:
                    top.node.add(part)
                result = part
            else:
                result = None
        assert result is not None
        return result

    def _enter(self, value: Any) -> bytes | None:
        """The digest of ``value`` if it is known at once, else None with its frame pushed."""
        encode = _ATOMS.get(type(value))
        if encode is not None:
            node = Node(self)
            encode(node, value)
            return node.finish()
        key = id(value)
        known = self.memo.get(key)
        if known is not None:
            return known
        depth = self.open.get(key)
        if depth is not None:
            return bytes(xxhash.xxh3_128_digest(b"cycle\x00" + _Q(len(self.frames) - depth)))
        self._pending = value
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
        if gen is None:
            result = node.finish()
            if len(node._buf) > _REMEMBER_LEAVES:
                self.memo[key] = result
                self.keep.append(value)
            # A small leaf (a tuple of scalars) is cheaper to hash again for
            # each parent that holds it than to remember: still linear, since
            # the parents themselves are remembered.
            return result
        self.open[key] = len(self.frames)
        self.frames.append(_Frame(value, node, gen))
        return None


def _spell(step: Step) -> str:
    if type(step) is int:
        return f"[{step}]"
    if type(step) is str:
        return step
    try:
        return f"[{step[0]!r}]"  # type: ignore[index]
    except Exception:  # noqa: BLE001 - a key whose repr fails is still a key
        return "[<key>]"


# -- the registry ------------------------------------------------------------------

Matcher = Callable[[type], bool]
_REGISTERED: list[tuple[Matcher, Rule]] = []
_BY_TYPE: dict[type, Rule] = {}
_registry_lock = threading.Lock()


def register(*rules: tuple[Matcher, Rule]) -> None:
    """Add rules ahead of the builtin defaults; each matches on the value's type.

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
    for matches, candidate in (*_FIRST, *_REGISTERED, *_DEFAULTS):
        if matches(cls):
            rule = candidate
            break
    else:
        rule = _reduce_rule
    _BY_TYPE[cls] = rule
    return rule


def _loaded(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is imported already and it is a class, else None."""
    mod = sys.modules.get(module)
    cls: Any = mod
    for part in name.split("."):
        cls = getattr(cls, part, None)
    return cls if isinstance(cls, type) else None


def subclass_of(module: str, *names: str) -> Matcher:
    """A matcher for subclasses of ``module.name`` that imports nothing."""

    def matches(cls: type) -> bool:
        for name in names:
            base = _loaded(module, name)
            if base is not None and issubclass(cls, base):
                return True
        return False

    return matches


# -- builtin containers -----------------------------------------------------------


def _sequence_rule(n: Node, value: list[Any] | tuple[Any, ...]) -> Parts | None:
    n.tag(b"list" if type(value) is list else b"tuple")
    n.count(len(value))
    atoms = _ATOMS
    for index, item in enumerate(value):
        encode = atoms.get(type(item))
        if encode is None:  # a part that is an object: a frame for the rest
            return _sequence_tail(n, value, index)
        encode(n, item)
    return None  # all scalars: done without a frame


def _sequence_tail(n: Node, value: list[Any] | tuple[Any, ...], start: int) -> Parts:
    atoms = _ATOMS
    for index in range(start, len(value)):
        item = value[index]
        encode = atoms.get(type(item))
        if encode is None:
            yield item, index
        else:
            encode(n, item)


def _dict_rule(n: Node, value: dict[Any, Any]) -> Parts | None:
    # Ordered: list(d), iteration and repr show insertion order, and a cell's
    # result can follow it.  Two dicts that differ only in order differ here.
    n.tag(b"dict")
    n.count(len(value))
    atoms = _ATOMS
    items = list(value.items())
    for index, (key, item) in enumerate(items):
        encode_key, encode_item = atoms.get(type(key)), atoms.get(type(item))
        if encode_key is None or encode_item is None:
            return _items_tail(n, items, index, attrs=False)
        encode_key(n, key)
        encode_item(n, item)
    return None


def _items_tail(n: Node, items: list[tuple[Any, Any]], start: int, attrs: bool) -> Parts:
    atoms = _ATOMS
    for index in range(start, len(items)):
        key, item = items[index]
        encode = atoms.get(type(key))
        if encode is None:
            yield key, ".<key>"
        else:
            encode(n, key)
        encode = atoms.get(type(item))
        if encode is None:
            yield item, (f".{key}" if attrs and type(key) is str else (key,))
        else:
            encode(n, item)


def _items_rule(n: Node, items: list[tuple[Any, Any]], attrs: bool) -> Parts:
    """Ordered pairs; with ``attrs`` a str key names ``.attr`` in error paths."""
    n.count(len(items))
    yield from _items_tail(n, items, 0, attrs)


def _unordered(n: Node, items: Any) -> Parts:
    parts: list[bytes] = []
    for item in list(items):
        encode = _ATOMS.get(type(item))
        if encode is not None:
            leaf = Node(n._walk)
            encode(leaf, item)
            parts.append(leaf.finish())
        else:
            parts.append((yield Unfed(item, ".<item>")))
    parts.sort()
    n.count(len(parts))
    for part in parts:
        n.add(part)


def _set_rule(n: Node, value: set[Any] | frozenset[Any]) -> Parts:
    n.tag(b"set" if type(value) is set else b"frozenset")
    yield from _unordered(n, value)


def _set_subclass_rule(n: Node, value: Any) -> Parts:
    # Not through reduce: a set subclass reduces to list(self), whose order
    # follows the hash seed.
    n.tag(b"set-subclass")
    yield type(value), ".__class__"
    yield from _unordered(n, value)
    state = _instance_dict(value)
    n.tag(b"state")
    yield from _items_rule(n, list((state or {}).items()), attrs=True)


# -- live handles ----------------------------------------------------------------

_LIVE_STATIC: tuple[type, ...] = (
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.FrameType,
    types.TracebackType,
    io.IOBase,
    socket.socket,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Event,
    threading.Semaphore,
    threading.Thread,
    threading.Barrier,
)
_LIVE_OPTIONAL = (
    ("matplotlib.artist", "Artist"),  # Figure, Axes, lines, texts
    ("matplotlib.backend_bases", "FigureCanvasBase"),
    ("ipywidgets", "Widget"),
    ("sqlite3", "Connection"),
    ("sqlite3", "Cursor"),
    ("subprocess", "Popen"),
    ("asyncio", "AbstractEventLoop"),
    ("asyncio", "Future"),
    ("concurrent.futures", "Future"),
    ("multiprocessing.connection", "Connection"),
    ("mmap", "mmap"),
)


def is_live_handle(cls: type) -> bool:
    """True for handles whose state lives outside the value: nothing to key them on."""
    if issubclass(cls, (io.BytesIO, io.StringIO)):
        return False  # in-memory buffers: their content is the value, and it pickles
    if issubclass(cls, _LIVE_STATIC):
        return True
    return any(
        (base := _loaded(module, name)) is not None and issubclass(cls, base)
        for module, name in _LIVE_OPTIONAL
    )


def _live_rule(n: Node, value: Any) -> None:
    raise LiveHandleError(
        "it is a live handle (a figure, widget, open file, connection, lock or generator), "
        "whose state lives outside the value, so nbcache does not guess a key for it"
    )


# -- code and names ----------------------------------------------------------------


def _importable_as(module: str, qualname: str, obj: Any) -> bool:
    """True if ``module.qualname`` names ``obj`` itself, so the name says what it is."""
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None) if found is not None else None
    return found is obj


def global_rule(n: Node, obj: Any) -> Parts:
    """Installed code: ``module:qualname@version``, never a walk through its code.

    A function its name does not find (a closure a library made, a
    ``functools.wraps`` copy) adds its defaults and closure values, which is
    where such functions keep what distinguishes them.
    """
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "?"
    n.tag(b"global")
    n.text(f"{module}:{qualname}@{module_version(str(module))}")
    if type(obj) is types.FunctionType and not _importable_as(str(module), str(qualname), obj):
        n.tag(b"unnamed")
        yield (obj.__defaults__, ".__defaults__")
        yield (obj.__kwdefaults__, ".__kwdefaults__")
        for index, cell in enumerate(obj.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                n.tag(b"empty")
                continue
            yield contents, f".__closure__[{index}]"


def _module_rule(n: Node, module: types.ModuleType) -> None:
    n.tag(b"module")
    n.text(f"{module.__name__}@{module_version(module.__name__)}")


def _method_rule(n: Node, method: types.MethodType) -> Parts:
    n.tag(b"method")
    yield method.__func__, ".__func__"
    yield method.__self__, ".__self__"


def _builtin_rule(n: Node, fn: Any) -> Parts:
    """``len``, ``math.sqrt``: by name; ``rng.random``, ``[].append``: by their object too."""
    owner = getattr(fn, "__self__", None)
    if owner is None or type(owner) is types.ModuleType:
        yield from global_rule(n, fn)
        return
    n.tag(b"bound-builtin")
    n.text(str(getattr(fn, "__name__", "?")))
    yield owner, ".__self__"


def _descriptor_rule(n: Node, desc: Any) -> Parts:
    """``str.upper``, ``object.__init__``: the class that owns it, and its name."""
    n.tag(b"descriptor")
    n.text(str(getattr(desc, "__name__", "?")))
    owner = getattr(desc, "__objclass__", None)
    if owner is None:
        owner = getattr(desc, "__self__", None)
        n.tag(b"bound")
    yield owner, ".__objclass__"


_DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


# -- numpy --------------------------------------------------------------------------


def _dtype_text(dtype: Any) -> str:
    text = f"{dtype.str}|{dtype!s}"  # byte order, and units, fields, subarrays
    if dtype.metadata:
        text += f"|{sorted(dtype.metadata.items())!r}"
    return text


def ndarray_rule(n: Node, array: Any) -> Parts:
    """An array by dtype, shape and buffer; a subclass adds its class and its state."""
    np = sys.modules["numpy"]
    cls = type(array)
    n.tag(b"ndarray")
    if cls is not np.ndarray:
        yield cls, ".__class__"
        yield from _ndarray_subclass_state(n, array, np)
        array = array.view(np.ndarray)
    dtype = array.dtype
    if not dtype.isnative:
        # By value in native order: numpy's own pickle gives a '>i4' array back
        # as '<i4', so a value restored from the store would otherwise miss.
        dtype = dtype.newbyteorder("=")
        array = array.astype(dtype)
    n.text(_dtype_text(dtype))
    n.count(array.ndim)
    for size in array.shape:
        n.count(size)
    if dtype.fields is not None:
        for field in dtype.names:  # field by field: padding bytes are not content
            yield array[field], f"[{field!r}]"
        return
    if dtype.hasobject:
        atom = n.atom
        for index, item in enumerate(array.ravel(order="C").tolist()):
            if not atom(item):
                yield item, f".flat[{index}]"
        return
    # The same bytes whatever the memory layout: C order, a slab at a time, as
    # uint8 (memoryview(array) refuses datetime64 and timedelta64).
    n._buf += _Q(array.nbytes)
    hasher = xxhash.xxh3_128()
    if array.flags.c_contiguous:
        view = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
        for start in range(0, view.nbytes, _CHUNK):
            hasher.update(view[start : start + _CHUNK])
            n._walk.check_clock()
    else:
        flat = array.reshape(array.shape[0], -1) if array.ndim > 1 else array
        rows = max(1, _CHUNK // max(1, flat[0:1].nbytes)) if len(flat) else 1
        for start in range(0, len(flat), rows):
            slab = np.ascontiguousarray(flat[start : start + rows])
            hasher.update(memoryview(slab.reshape(-1).view(np.uint8)))
            n._walk.check_clock()
    n.add(bytes(hasher.digest()))


def _ndarray_subclass_state(n: Node, array: Any, np: Any) -> Parts:
    """What a subclass holds beside its buffer: a mask, a memory map's mode, attributes."""
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(array, ma.MaskedArray):
        n.tag(b"masked")
        yield np.asarray(ma.getmaskarray(array)), ".mask"
        yield array.fill_value, ".fill_value"
        n.count(int(bool(array.hardmask)))
        return
    if isinstance(array, np.memmap):
        n.tag(b"memmap")
        n.text(str(getattr(array, "mode", None)))
        return
    state = _instance_dict(array)
    if state:
        n.tag(b"state")
        yield from _items_rule(n, list(state.items()), attrs=True)


def _numpy_scalar_rule(n: Node, value: Any) -> Parts:
    n.tag(b"npscalar")
    dtype = value.dtype
    n.text(_dtype_text(dtype))
    if dtype.hasobject or dtype.fields is not None:
        yield value.item(), ".item()"
        return
    n.raw(value.tobytes())


# -- anything else: the reduce protocol ---------------------------------------------


def _instance_dict(value: Any) -> dict[str, Any] | None:
    """``value.__dict__`` without running a ``__getattr__`` that answers every name."""
    try:
        state = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return None
    return state if type(state) is dict else None


def _wrapped_of(value: Any) -> Any:
    state = _instance_dict(value)
    return None if state is None else state.get("__wrapped__")


def _dlpack_rule(n: Node, value: Any) -> Parts | None:
    """A tensor (torch, jax, cupy on the CPU) by its buffer through DLPack."""
    np = sys.modules.get("numpy")
    if np is None or not hasattr(type(value), "__dlpack__"):
        return None
    try:
        array = np.from_dlpack(value)
    except Exception:  # noqa: BLE001 - on a device, or a tensor that refuses: reduce it instead
        return None
    return _tensor_parts(n, value, array)


def _tensor_parts(n: Node, value: Any, array: Any) -> Parts:
    n.tag(b"dlpack")
    yield type(value), ".__class__"
    own = _instance_dict(value) or {}
    for attr in ("dtype", "device", "requires_grad", "layout"):
        if _has_attr(type(value), attr) or attr in own:
            n.text(f"{attr}={getattr(value, attr, None)!s}")
    yield array, ".__dlpack__()"


def _reduce_rule(n: Node, value: Any) -> Parts | None:
    cls = type(value)
    wrapped = _wrapped_of(value)
    if wrapped is not None and callable(value):
        # A decorated function (lru_cache, @memoize): its code is what counts;
        # a reduce would name it and nothing more.
        return _wrapper_parts(n, value, wrapped)
    tensor = _dlpack_rule(n, value)
    if tensor is not None:
        return tensor
    reducer = copyreg.dispatch_table.get(cls)
    try:
        reduced = reducer(value) if reducer is not None else value.__reduce_ex__(4)
    except Exception as exc:  # noqa: BLE001 - any failure: the buffer, else a KeyPicklingError
        try:
            view = memoryview(value)  # a buffer with nothing else to say
        except TypeError:
            raise KeyPicklingError(f"it cannot be reduced ({type(exc).__name__}: {exc})") from exc
        return _buffer_parts(n, value, view)
    return _reduced_parts(n, value, reduced)


def _reduce_is_inherited(cls: type) -> bool:
    for klass in cls.__mro__:
        if "__reduce_ex__" in vars(klass) or "__reduce__" in vars(klass):
            return klass is not cls and klass is not object
    return False


def _wrapper_parts(n: Node, value: Any, wrapped: Any) -> Parts:
    n.tag(b"wrapper")
    n.text(type_name(type(value)))
    yield wrapped, ".__wrapped__"


def _buffer_parts(n: Node, value: Any, view: memoryview) -> Parts:
    n.tag(b"buffer")
    yield type(value), ".__class__"
    n.text(f"{view.format}|{view.shape}")
    n.raw(view.tobytes() if not view.c_contiguous else view)


def _reduced_parts(n: Node, value: Any, reduced: Any) -> Parts:
    if type(reduced) is str:  # a module-level singleton, saved by name
        module = getattr(value, "__module__", None) or "?"
        n.tag(b"named")
        n.text(f"{module}:{reduced}@{module_version(str(module))}")
        return
    if type(reduced) is not tuple or not 2 <= len(reduced) <= 6:
        raise KeyPicklingError(
            f"its __reduce_ex__ returned {type(reduced).__name__}, not a string or a tuple of "
            "2 to 6 items"
        )
    callable_, args, *rest = (*reduced, None, None, None, None)[:6]
    if type(args) is not tuple:
        raise KeyPicklingError(f"its __reduce_ex__ gave arguments of type {type(args).__name__}")
    n.tag(b"reduce")
    yield callable_, ".__reduce__()[0]"
    yield args, ".__reduce__()[1]"
    state, listitems, dictitems, setter = rest
    if (
        type(state) is tuple
        and len(state) == 2
        and (state[0] is None or type(state[0]) is dict)
        and type(state[1]) is dict
    ):
        state = {**(state[0] or {}), **state[1]}  # (__dict__, __slots__) as one mapping
    if state is None and _reduce_is_inherited(type(value)):
        # A reduction a subclass inherits (a Counter subclass's) leaves out the
        # attributes the subclass adds: the key would be blind to them.  A
        # class that writes its own __reduce__ says what it is made of.
        state = _instance_dict(value) or None
    if type(state) is dict:
        n.tag(b"state")
        yield from _items_rule(n, list(state.items()), attrs=True)
    else:
        yield state, ".__getstate__()"
    if listitems is not None:
        yield list(listitems), ".<items>"
    if dictitems is not None:
        n.tag(b"dictitems")
        yield from _items_rule(n, list(dictitems), attrs=False)
    if setter is not None:
        yield setter, ".<state setter>"


def _is_function_like(cls: type) -> bool:
    return cls is types.FunctionType


def _is_plain_object(cls: type) -> bool:
    """A class whose pickle is exactly (the class, ``__dict__``): hashed so without reducing.

    The fast path for the commonest objects (a model's parameters, a linked
    list's nodes): ``copyreg.__reduce_ex__`` is written in Python and makes
    three throwaway objects per instance.
    """
    if cls in copyreg.dispatch_table or hasattr(cls, "__dlpack__"):
        return False
    for method in ("__reduce_ex__", "__reduce__", "__getstate__"):
        if getattr(cls, method, None) is not getattr(object, method, None):
            return False
    if hasattr(cls, "__getnewargs_ex__") or hasattr(cls, "__getnewargs__"):
        return False
    slots_or_builtin = any("__slots__" in vars(k) for k in cls.__mro__[:-1])
    has_dict = any("__dict__" in vars(k) for k in cls.__mro__[:-1])
    return has_dict and not slots_or_builtin and cls.__flags__ & (1 << 9) != 0  # a heap type


def _object_rule(n: Node, value: Any) -> Parts:
    state = _instance_dict(value) or {}
    wrapped = state.get("__wrapped__")
    if wrapped is not None and callable(value):
        yield from _wrapper_parts(n, value, wrapped)
        return
    n.tag(b"object")
    yield type(value), ".__class__"
    yield from _items_rule(n, list(state.items()), attrs=True)


_FIRST: tuple[tuple[Matcher, Rule], ...] = (
    (lambda c: c is list or c is tuple, _sequence_rule),
    (lambda c: c is dict, _dict_rule),
    (lambda c: c is set or c is frozenset, _set_rule),
    (is_live_handle, _live_rule),
)
_DEFAULTS: tuple[tuple[Matcher, Rule], ...] = (
    (lambda c: issubclass(c, (set, frozenset)), _set_subclass_rule),
    (lambda c: issubclass(c, types.ModuleType), _module_rule),
    (lambda c: c is types.MethodType, _method_rule),
    (_is_function_like, global_rule),
    (lambda c: issubclass(c, type), global_rule),
    (lambda c: c is types.BuiltinFunctionType, _builtin_rule),
    (lambda c: issubclass(c, _DESCRIPTORS), _descriptor_rule),
    (subclass_of("numpy", "ndarray"), ndarray_rule),
    (subclass_of("numpy", "generic"), _numpy_scalar_rule),
    (_is_plain_object, _object_rule),
)
