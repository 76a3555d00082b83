"""What a function's result depends on besides its arguments: its code, and what that uses.

A function's fingerprint covers its source (comments and formatting ignored),
its defaults and closure values, and, recursively and cycle-safe, the
notebook-defined functions and classes it uses, the values of the globals
it reads, and the modules its own code imports (``import x`` inside the body).
Installed modules and their functions count by name and version, never by a
walk through their code; local modules by their source and every local
module they reach (:mod:`nbcache.keys.modules`).  ``is_local_module`` and
``module_fingerprint`` are re-exported here for the callers that know them
from this module.

Computing a fingerprint parses source, so it is cached per function together
with a list of cheap checks (is ``helper`` still the same object? does
``THRESHOLD`` still hash the same?).  Every call re-runs the checks, so a helper
redefined in the next cell is noticed on the very next call, and a data global
mutated in place is re-hashed; only when a check fails is the fingerprint
computed again.
"""

from __future__ import annotations

import inspect
import threading
import types
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..errors import KeyPicklingError
from .classes import Matcher
from .guards import MISSING, Guards
from .hashing import HASH_VERSION, digest
from .modules import (
    is_local_module,
    module_fingerprint,
    module_fingerprint_by_name,
)
from .node import Node, Request, Rule
from .rules.names import global_rule
from .source import Accumulator, global_names, imported_in_body, source_digest
from .standin import StandIn

__all__ = [
    "RULES",
    "Dependency",
    "Fingerprint",
    "code_reached",
    "fingerprint",
    "fingerprint_of",
    "identity",
    "is_code",
    "is_local_module",
    "module_fingerprint",
    "short_name",
]

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), range)
# Not the class's code: ``__slotnames__`` is pickle's cache, which copyreg writes into
# the class the first time an instance is pickled (stored), changing vars(cls).
_SKIP_CLASS_ATTRS = {"__dict__", "__weakref__", "__module__", "__qualname__", "__slotnames__"}


def short_name(identity_name: str) -> str:
    """``__main__:f`` -> ``f``; a function local to another shows its own name only."""
    return identity_name.partition(":")[2].rpartition("<locals>.")[2]


def identity(fn: Any) -> str:
    """``module:qualname``: the same for a notebook function in every kernel session."""
    fn = unwrap(fn)
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"


def unwrap(fn: Any) -> Any:
    """``inspect.unwrap`` that stops at loops and never runs a ``__getattr__``."""
    seen = {id(fn)}
    while True:
        try:
            inner = object.__getattribute__(fn, "__dict__").get("__wrapped__")
        except (AttributeError, TypeError):
            return fn
        if inner is None or id(inner) in seen or len(seen) > 100:
            return fn
        seen.add(id(inner))
        fn = inner


# -- the fingerprint and its checks ---------------------------------------------


@dataclass(frozen=True)
class Dependency:
    """One thing a fingerprint was made of, for "why did it miss"."""

    name: str
    kind: str  # "code", "global", "module", "closure", "default", "base", "member"
    digest: str
    via: str = ""  # qualified name of the function or class that uses it


# Checks run from their list this many times before they are compiled into one function.
_COMPILE_AFTER = 16


@dataclass
class Fingerprint:
    """A function's code digest, what it was made of, and how to tell it still holds.

    :attr:`valid` is the check itself, an attribute so the hit path calls it without a
    method of its own in between: at first it runs the checks from their list, and once
    they held a few times, the one function :class:`~nbcache.keys.guards.Guards` compiles.
    """

    digest: str
    dependencies: list[Dependency] = field(default_factory=list)
    checks: list[Callable[[], bool]] = field(default_factory=list)
    reads_data: bool = False  # some dependency is re-hashed on every check
    guards: Guards | None = field(default=None, repr=False, compare=False)
    valid: Callable[[], bool] = field(init=False, repr=False, compare=False)
    _passes: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.valid = self._from_list

    def still_valid(self) -> bool:
        return self.valid()

    def _from_list(self) -> bool:
        for check in self.checks:
            if not check():
                return False
        self._passes += 1
        if self._passes >= _COMPILE_AFTER and self.guards is not None:
            self.valid = self.guards.compiled()
        return True


_CACHE: weakref.WeakKeyDictionary[Any, Fingerprint] = weakref.WeakKeyDictionary()


def fingerprint(obj: Any) -> str:
    """The digest of a function's or class's code and everything it uses."""
    return fingerprint_of(obj).digest


def fingerprint_of(obj: Any) -> Fingerprint:
    """The cached fingerprint of ``obj`` if its checks pass, else a fresh one."""
    inner = unwrap(obj)
    building = _building()
    if id(inner) in building:
        # Reached again through a value (an enum member's class, say): name it only.
        return Fingerprint(f"recursion:{identity(inner)}")
    building.add(id(inner))
    try:
        return _cached_or_built(obj)
    finally:
        building.discard(id(inner))


def _cached_or_built(obj: Any) -> Fingerprint:
    try:
        cached = _CACHE.get(obj)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached.still_valid():
        return cached
    try:
        fresh = _Builder().build(obj)
    except KeyPicklingError:
        raise
    except Exception as exc:  # a fingerprint fails as a key fails, never with a traceback
        raise KeyPicklingError(
            f"cannot fingerprint `{identity(obj)}` ({type(obj).__name__}): "
            f"{type(exc).__name__}: {exc}."
        ) from exc
    try:
        _CACHE[obj] = fresh
    except TypeError:
        pass
    return fresh


_local = threading.local()


def _building() -> set[int]:
    """Ids of the code objects whose fingerprints this thread is computing now."""
    ids: set[int] | None = getattr(_local, "ids", None)
    if ids is None:
        ids = _local.ids = set()
    return ids


class _Builder:
    """One fingerprint computation; ``_stack`` makes recursion through helpers cycle-safe."""

    def __init__(self) -> None:
        self._stack: set[int] = set()
        self._users: list[str] = []
        self.deps: list[Dependency] = []
        self.guards = Guards()
        self.reads_data = False

    def build(self, obj: Any) -> Fingerprint:
        h = Accumulator()
        h.tag(f"fingerprint-v{HASH_VERSION}".encode())
        self._feed_code_object(h, obj)
        guards = self.guards
        return Fingerprint(h.hexdigest(), self.deps, guards.checks, self.reads_data, guards)

    def _feed_code_object(self, h: Accumulator, outer: Any) -> None:
        h.text(identity(obj := unwrap(outer)))
        if id(obj) in self._stack:
            h.tag(b"recursion")
            return
        self._stack.add(id(obj))
        self._users.append(getattr(obj, "__qualname__", "?"))
        try:
            self._feed_wrappers(h, outer, obj)
            if isinstance(obj, type):
                self._feed_class(h, obj)
            elif isinstance(obj, types.FunctionType):
                self._feed_function(h, obj)
            else:
                h.feed(obj, identity(obj))
        finally:
            self._stack.discard(id(obj))
            self._users.pop()

    def _feed_wrappers(self, h: Accumulator, layer: Any, inner: Any) -> None:
        """Local ``functools.wraps`` wrappers around ``inner`` by code and closure: what
        ``deco(3)(f)`` adds, applied by a call, is in no line of ``f``."""
        while layer is not inner:
            local = type(layer) is types.FunctionType and layer.__globals__.get("__name__")
            if local and is_local_module(str(local)):
                h.tag(b"wrapper")
                self._feed_function(h, layer)
            layer = object.__getattribute__(layer, "__dict__")["__wrapped__"]

    # functions

    def _feed_function(self, h: Accumulator, fn: types.FunctionType) -> None:
        h.tag(b"function")
        h.text(source_digest(fn))
        code, defaults, kwdefaults = fn.__code__, fn.__defaults__, fn.__kwdefaults__
        self.guards.same_code(fn, code, defaults, kwdefaults)
        for index, value in enumerate(defaults or ()):
            self._feed_value(h, f"default {index}", value, "default", None)
        for name, value in sorted((kwdefaults or {}).items()):
            self._feed_value(h, f"default {name}", value, "default", None)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
            try:
                value = cell.cell_contents
            except ValueError:  # not assigned yet
                continue
            self._feed_value(h, name, value, "closure", _cell_reader(cell))
        namespace = fn.__globals__
        builtins = namespace.get("__builtins__")
        for name in sorted(global_names(fn.__code__)):
            if name in namespace:
                value = namespace[name]
                self._feed_value(
                    h, name, value, "global", _global_reader(namespace, name), (namespace, name)
                )
            elif not _is_builtin(builtins, name):
                h.tag(b"unbound")
                h.text(name)
                self.guards.unbound(namespace, name)
        package = namespace.get("__package__") or ""
        for module_name in sorted(imported_in_body(fn.__code__, str(package))):
            self._feed_imported(h, module_name)

    def _feed_imported(self, h: Accumulator, module_name: str) -> None:
        """A module the function's own code imports: local ones by their source."""
        part = module_fingerprint_by_name(module_name)
        if part is None:
            return  # installed: its functions count by version where they are used
        h.text(f"import:{module_name}")
        h.text(part)
        self.deps.append(Dependency(module_name, "module", part, self._users[-1]))
        self.guards.call(lambda: module_fingerprint_by_name(module_name) == part)

    def _feed_value(
        self,
        h: Accumulator,
        name: str,
        value: Any,
        kind: str,
        current: Callable[[], Any] | None,
        where: tuple[dict[str, Any], str] | None = None,
    ) -> None:
        """Hash one dependency and register the check that tells when it changed.

        ``current`` reads what the name holds now; None for a value held by the code
        itself (a default, a base, a member), which no rebinding can change: it gets
        no identity check, which every call would pay for nothing. ``where`` is the
        namespace and name of a global, checked by one dictionary look-up.
        """
        h.text(f"{kind}:{name}")
        if is_code(value):
            sub = Accumulator()
            self._feed_code_object(sub, value)
            part = sub.hexdigest()
            h.text(part)
            self.deps.append(Dependency(name, "code", part, self._users[-1]))
            self._still_bound(current, value, where)
            return
        if type(value) is StandIn and value.imports:
            # a library's module, function or class not imported yet (nbcache.run.lazy):
            # what the value itself feeds, so the fingerprint is the one it will have
            part = value.fingerprint or value.digest
            h.text(part)
            what = "module" if value.fingerprint else kind
            self.deps.append(Dependency(name, what, part, self._users[-1]))
            self._still_bound(current, value, where)
            return
        if isinstance(value, types.ModuleType):
            part = module_fingerprint(value)
            h.text(part)
            self.deps.append(Dependency(name, "module", part, self._users[-1]))
            if is_local_module(value.__name__):
                self.guards.call(lambda: module_fingerprint(value) == part)
            self._still_bound(current, value, where)
            return
        try:
            part = digest(value, name=name)
        except KeyPicklingError as exc:
            raise KeyPicklingError(
                f"{exc} It is a {kind} that `{self._users[-1]}` uses: pass it as an argument "
                "instead, or make it picklable."
            ) from exc
        h.text(part)
        self.deps.append(Dependency(name, kind, part, self._users[-1]))
        if _is_immutable(value) or _is_library_object(value):
            self._still_bound(current, value, where)
        else:
            self.reads_data = True
            if current is None:
                self.guards.call(lambda: _same_digest(value, part))
            else:
                self.guards.call(lambda: _same_digest(current(), part))

    def _still_bound(
        self,
        current: Callable[[], Any] | None,
        value: Any,
        where: tuple[dict[str, Any], str] | None,
    ) -> None:
        if where is not None:
            self.guards.bound(*where, value)
        elif current is not None:
            self.guards.call(lambda: current() is value)

    # classes

    def _feed_class(self, h: Accumulator, cls: type) -> None:
        h.tag(b"class")
        for base in cls.__bases__:
            self._feed_value(h, f"base {base.__qualname__}", base, "base", None)
        members = {k: v for k, v in vars(cls).items() if k not in _SKIP_CLASS_ATTRS}
        snapshot = tuple(members.items())
        self.guards.call(lambda: _members_unchanged(cls, snapshot))
        if _generated_doc(cls):
            del members["__doc__"]
        for name, member in sorted(members.items()):
            for part_name, part in _member_parts(name, member):
                qual = f"{cls.__qualname__}.{part_name}"
                self._feed_value(h, qual, part, "member", None)


def _generated_doc(cls: type) -> bool:
    """A docstring ``@dataclass`` wrote: the signature, defaults shown by repr.

    A set default's repr follows the per-process hash seed, so the class would
    key differently in every kernel; what the text says, the fields and
    ``__init__``'s defaults say too, and they are hashed.
    """
    doc = vars(cls).get("__doc__")
    if "__dataclass_fields__" not in vars(cls) or type(doc) is not str:
        return False
    try:
        signature = str(inspect.signature(cls)).replace(" -> None", "")
    except (TypeError, ValueError):
        signature = ""
    return doc == cls.__name__ + signature


def _members_unchanged(cls: type, snapshot: tuple[tuple[str, Any], ...]) -> bool:
    members = [(k, v) for k, v in vars(cls).items() if k not in _SKIP_CLASS_ATTRS]
    return len(members) == len(snapshot) and all(
        a[0] == b[0] and a[1] is b[1] for a, b in zip(members, snapshot, strict=True)
    )


def _member_parts(name: str, member: Any) -> list[tuple[str, Any]]:
    if isinstance(member, (staticmethod, classmethod)):
        return [(name, member.__func__)]
    if isinstance(member, property):
        return [(f"{name}.{a}", f) for a in ("fget", "fset", "fdel") if (f := getattr(member, a))]
    if isinstance(member, (types.FunctionType, type)) or _is_immutable(member):
        return [(name, member)]
    try:
        digest(member)
    except KeyPicklingError:  # a descriptor or slot wrapper: its type is what we know
        return [(name, f"<{type(member).__qualname__}>")]
    return [(name, member)]


# -- helpers ---------------------------------------------------------------------


def _cell_reader(cell: types.CellType) -> Callable[[], Any]:
    def read() -> Any:
        try:
            return cell.cell_contents
        except ValueError:  # deleted since
            return MISSING

    return read


def _global_reader(namespace: dict[str, Any], name: str) -> Callable[[], Any]:
    return lambda: namespace.get(name, MISSING)


def is_code(value: Any) -> bool:
    """True for functions and classes defined in the notebook or a local module.

    Asks the types and the instance dict only: ``hasattr`` would run a
    ``__getattr__``, which may raise anything.
    """
    if callable(value) and type(value) is not type:
        value = unwrap(value)  # a decorated notebook helper counts by its code
    kind = type(value)
    if kind is types.FunctionType:
        return is_local_module(value.__module__ or "")
    if issubclass(kind, type):
        return is_local_module(str(value.__module__))
    return False


def _is_immutable(value: Any) -> bool:
    if isinstance(value, _IMMUTABLE):
        return True
    if type(value) in (tuple, frozenset):
        return all(type(v) in _IMMUTABLE for v in value)
    return False


def _is_library_object(value: Any) -> bool:
    """Installed functions and classes are hashed by name and version: identity suffices."""
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type))


def _same_digest(value: Any, expected: str) -> bool:
    try:
        return digest(value) == expected
    except KeyPicklingError:  # unhashable now: the fingerprint must be rebuilt
        return False


def _is_builtin(builtins: Any, name: str) -> bool:
    if isinstance(builtins, dict):
        return name in builtins
    return hasattr(builtins, name)


# -- the hashing rule for code values ------------------------------------------------


def _code_rule(n: Node, value: Any) -> Generator[Request, bytes, None]:
    """Local functions and classes by fingerprint, local modules by source, the rest by name."""
    if isinstance(value, types.ModuleType):
        n.tag(b"module")
        n.text(module_fingerprint(value))
        return
    module = getattr(value, "__module__", None) or ""
    if is_local_module(str(module)):
        _local.reached = getattr(_local, "reached", 0) + 1
        n.tag(b"code")
        n.text(fingerprint(value))
        return
    yield from global_rule(n, value)


def code_reached() -> int:
    """How many times hashing in this thread reached a notebook function or class: a
    value that holds one (a callback, an instance of a notebook class) calls code that
    reads the namespace, so nbcache.run.lazy never stands in for it."""
    return int(getattr(_local, "reached", 0))


def _is_code_type(cls: type) -> bool:
    return cls is types.FunctionType or issubclass(cls, (type, types.ModuleType))


RULES: tuple[tuple[Matcher, Rule], ...] = ((_is_code_type, _code_rule),)
