"""Safe pickling: protocol 5, out-of-band buffers, a cloudpickle fallback, clear errors.

``try_pickle``/``try_unpickle`` move plain bytes.  The store uses
:func:`dump_parts`/:func:`load_parts`, which keep large buffers out of band
(whatever hands pickle a ``PickleBuffer``: numpy arrays, so pandas and most
array libraries too), so a 1 GB array is written straight from its own memory
and never copied into one giant bytes object.  Plain ``bytes`` stay in band.

Nothing here checks signatures: unpickling runs code, so callers must only pass
bytes whose MAC has been verified (the store does, see :mod:`nbcache.entry.format`).

**Restored code is live code.**  cloudpickle saves a notebook function with a
copy of the globals it reads, and loads it with a private namespace of its
own: after a restart ``scale = 10`` then ``f(2)`` would still compute with the
old ``scale``.  Functions from ``__main__`` that this module pickles are saved
without their globals and rebuilt over the live ``__main__`` namespace (or the
one given to :func:`restoring_into`), so they read the notebook's globals as
a freshly defined one would.  They also carry the source lines they were
defined in, registered with ``linecache`` when loaded, so their code
fingerprint (by source) is what it was when they were defined.  Pickles made
for a worker process (``nbcache.tasks``) use plain cloudpickle and keep their
globals.
"""

from __future__ import annotations

import io
import linecache
import pickle
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import cloudpickle

from ..errors import CacheError, ValuePicklingError, ValueUnpicklingError
from .codefirst import binding_first
from .loadfailure import why_unloadable
from .mainclasses import (
    before_code_pending,
    importing_after,
    main_namespace,
    notebook_namespace,
    reduce_main_class,
    restoring_into,
)

__all__ = [
    "OUT_OF_BAND_MIN",
    "PROTOCOL",
    "Pickled",
    "describe_unpicklable",
    "dump_parts",
    "load_parts",
    "pickle_with",
    "probe",
    "rebuild_main_function",
    "rebuild_memoryview",
    "restore_main_function",
    "restoring_into",
    "try_pickle",
    "try_unpickle",
]

PROTOCOL = 5
# Buffers at least this large leave the pickle stream; smaller ones are not
# worth the per-buffer bookkeeping and alignment padding in the entry file.
OUT_OF_BAND_MIN = 1 << 20
# A standard pickle of an object from ``__main__`` (a notebook) refers to it by
# name, which is gone or different after a restart: such values go through
# cloudpickle, which pickles them by value.
_MAIN_MARKER = b"__main__"


@dataclass
class Pickled:
    """A pickle stream and the raw out-of-band buffers it refers to, in order."""

    stream: bytes
    buffers: list[memoryview] = field(default_factory=list)
    by_value: bool = False  # True when cloudpickle made the stream

    @property
    def nbytes(self) -> int:
        return len(self.stream) + sum(b.nbytes for b in self.buffers)


# -- notebook functions: rebuilt over the live namespace ---------------------------

# Cells bigger than this keep only the function's own lines (the rest blank).
_MAX_SOURCE = 1 << 20


def rebuild_main_function(
    code: types.CodeType, name: str, argdefs: Any, closure: Any, filename: str | None = None
) -> types.FunctionType:
    """Unpickling: a notebook function over the live namespace (its state comes next)."""
    if filename is not None:
        code = _with_filename(code, filename)
    # a method may run as its instances load (``__setstate__``, a set member's
    # ``__hash__``); a function is only rebuilt (see :func:`restoring_into`)
    method = "." in getattr(code, "co_qualname", "")
    namespace = notebook_namespace() if method else main_namespace()
    return types.FunctionType(code, namespace, name, argdefs, closure)


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    """cloudpickle saves code under a placeholder file name: put the cell's back, so the
    source registered under it is found (and tracebacks show the cell's lines)."""
    consts = tuple(
        _with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def restore_main_function(fn: types.FunctionType, state: Any) -> None:
    """Unpickling: what cloudpickle's state holds, minus the frozen globals, plus the source."""
    attrs, slots, source = state
    fn.__dict__.update(attrs)
    slots = dict(slots)
    slots.pop("__globals__", None)
    slots.pop("_cloudpickle_submodules", None)  # loaded already: they were unpickled first
    closure = slots.pop("__closure__", None)
    for index, cell in enumerate(closure or ()):
        try:
            fn.__closure__[index].cell_contents = cell.cell_contents  # type: ignore[index]
        except ValueError:  # an empty cell stays empty
            continue
    for key, value in slots.items():
        setattr(fn, key, value)
    if source is not None:
        _register_source(*source)


def _register_source(filename: str, lines: list[str]) -> None:
    """Put a cell's lines where ``inspect`` and the fingerprint look: as IPython does."""
    if linecache.getlines(filename):
        return  # a real file, or the cell is registered already
    linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)


def _source_of(fn: types.FunctionType) -> tuple[str, list[str]] | None:
    filename = fn.__code__.co_filename
    lines = linecache.getlines(filename, fn.__globals__)
    if not lines:
        return None
    if sum(map(len, lines)) > _MAX_SOURCE:
        first = fn.__code__.co_firstlineno - 1
        end = max((line for _, _, line in fn.__code__.co_lines() if line), default=first + 1)
        lines = ["\n"] * first + lines[first:end]
    return filename, lines


def _cloudpickle_function_reducers() -> tuple[Any, Any]:
    """The callables cloudpickle reduces a dynamic function to, found through its public hook."""
    reduced = cloudpickle.Pickler(io.BytesIO()).reducer_override(lambda: None)
    return reduced[0], reduced[5]


_CP_MAKE, _CP_SETSTATE = _cloudpickle_function_reducers()


class _KernelPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, except that notebook functions are saved to load live (see above)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is memoryview:  # cloudpickle's own makes it bytes: another type
            if obj.format.lstrip("@") not in _CASTABLE:
                raise pickle.PicklingError(f"a memoryview of format {obj.format!r}")
            return (rebuild_memoryview, (obj.tobytes(), obj.readonly, obj.format, obj.shape))
        reduced = super().reducer_override(obj)
        if isinstance(obj, type):
            return reduce_main_class(obj, reduced)
        if (
            type(obj) is types.FunctionType
            # Code written in the notebook: its globals are the notebook's. Not its
            # ``__module__``, which functools.wraps copies: a library's wrapper around a
            # notebook method (scikit-learn's set_output) says "__main__" and reads the
            # library's globals.
            and obj.__globals__.get("__name__") == "__main__"
            and type(reduced) is tuple
            and len(reduced) == 6
            and reduced[0] is _CP_MAKE
            and reduced[5] is _CP_SETSTATE
        ):
            code, _frozen_globals, name, argdefs, closure = reduced[1]
            attrs, slots = reduced[2]
            slots = {**slots, "__globals__": {}}  # read live on loading: not saved at all
            source = _source_of(obj)
            state = (attrs, slots, source)
            args = (code, name, argdefs, closure, obj.__code__.co_filename)
            return (rebuild_main_function, args, state, None, None, restore_main_function)
        return reduced


# The formats memoryview.cast() makes again; a view of another (a struct's) is not stored.
_CASTABLE = frozenset("bBhHiIlLqQnNfdec?P")


def rebuild_memoryview(data: bytes, readonly: bool, fmt: str, shape: tuple[int, ...]) -> memoryview:
    """Unpickling: a memoryview of a copy of what it showed, writable if it was, of the
    same format and shape (what it viewed is not restored with it: the copy is its own)."""
    view = memoryview(data if readonly else bytearray(data))
    if fmt == "B" and shape == (len(data),):
        return view
    cast: Any = view.cast  # typeshed names each format's overload; any of _CASTABLE goes
    rebuilt: memoryview = cast(fmt.lstrip("@"), shape)
    return rebuilt


def probe(obj: object, *, for_store: bool = True) -> BaseException | None:
    """Why ``obj`` cannot be pickled, or None if it can.

    Args:
        obj: the value.
        for_store: True asks as :func:`dump_parts` pickles for the store
            (notebook functions without their globals); False as plain
            cloudpickle pickles for a worker process (globals included).
    """
    pickler_type = _KernelPickler if for_store else cloudpickle.Pickler
    try:
        pickler_type(_Sink(), protocol=PROTOCOL, buffer_callback=lambda _: False).dump(obj)
    except Exception as exc:  # noqa: BLE001 - the probe reports, it does not handle
        return exc
    return None


class _Sink(io.RawIOBase):
    """A write-only file that keeps nothing: lets a probe pickle without allocating."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


def pickle_with(
    pickler_type: type[pickle.Pickler], obj: object, min_oob: int
) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` with ``pickler_type``: the stream, and its buffers of ``min_oob`` bytes up."""
    raw: list[memoryview] = []

    def keep_large_out_of_band(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < min_oob:
            return True  # true means in-band
        raw.append(view)
        return False

    out = io.BytesIO()
    pickler_type(out, protocol=PROTOCOL, buffer_callback=keep_large_out_of_band).dump(obj)
    return out.getvalue(), raw


_pickle_with = pickle_with  # kept for callers that imported it before it was public


def dump_parts(obj: object, name: str = "value", min_oob: int = OUT_OF_BAND_MIN) -> Pickled:
    """Pickle ``obj`` into a stream and its large raw buffers.

    Args:
        obj: any value.
        name: what to call ``obj`` in an error message (a variable name).
        min_oob: buffers of at least this many bytes stay out of band.

    Raises:
        ValuePicklingError: neither pickle nor cloudpickle can pickle ``obj``;
            the message names the path inside ``obj`` that failed.
    """
    try:
        stream, buffers = pickle_with(pickle.Pickler, obj, min_oob)
        if _MAIN_MARKER not in stream:
            return Pickled(stream, buffers)
    except RecursionError as exc:
        raise ValuePicklingError(
            f"cannot pickle {name} ({_type_name(obj)}): it is nested too deeply. "
            "Flatten it, or leave it out of the cached value."
        ) from exc
    except Exception:  # noqa: BLE001 - any failure here gets a second chance below
        pass
    try:
        stream, buffers = pickle_with(_KernelPickler, obj, min_oob)
    except Exception as exc:
        raise ValuePicklingError(_failure_message(obj, name, exc)) from exc
    return Pickled(stream, buffers, by_value=True)


_LOAD_IN_MAIN = compile("value = loads(stream, buffers=buffers)", "<nbcache restore>", "exec")
_LOAD_IMPORTING_AFTER = compile("value = load()", "<nbcache restore>", "exec")


def _loads_in_main(stream: bytes | memoryview, buffers: Sequence[Any]) -> Any:
    """``pickle.loads`` called from a frame whose globals are the notebook's namespace.

    Some objects look their environment up while they unpickle: a statsmodels model
    built from a formula re-evaluates it in its caller's frames (``double_it(x)``
    needs the notebook's ``double_it``), which would otherwise be nbcache's own.
    """
    scope: dict[str, Any] = {"loads": pickle.loads, "stream": stream, "buffers": buffers}
    code = _LOAD_IN_MAIN
    if before_code_pending():  # the C unpickler's `load`: no frame of ours in between
        scope["load"], code = importing_after(stream, buffers).load, _LOAD_IMPORTING_AFTER
    # the load's frame reads the notebook's names, and a cell's functions as they load
    with binding_first(main_namespace()) as names:
        exec(code, names, scope)
    return scope["value"]


def load_parts(stream: bytes | memoryview, buffers: Sequence[Any] = (), name: str = "value") -> Any:
    """The value that :func:`dump_parts` pickled, from verified bytes only.

    Raises:
        ValueUnpicklingError: the stream cannot be loaded here (a module is
            missing, a class moved, the bytes are damaged).
    """
    try:
        return _loads_in_main(stream, buffers)
    except Exception as exc:
        raise ValueUnpicklingError(why_unloadable(name, exc)) from exc


@overload
def try_pickle(
    obj: object, raise_if_failed: type[CacheError] = ..., *, name: str = ...
) -> bytes: ...
@overload
def try_pickle(obj: object, raise_if_failed: None, *, name: str = ...) -> bytes | None: ...


def try_pickle(
    obj: object,
    raise_if_failed: type[CacheError] | None = ValuePicklingError,
    *,
    name: str = "value",
) -> bytes | None:
    """Pickle ``obj`` to self-contained bytes (protocol 5, cloudpickle when needed).

    Args:
        obj: the value.
        raise_if_failed: the error class to raise on failure, or None to
            return None instead.
        name: what to call ``obj`` in the message.

    Raises:
        raise_if_failed: chained to the pickler's error; the message names the
            type and path of the part that failed.
    """
    try:
        return dump_parts(obj, name, min_oob=1 << 62).stream
    except ValuePicklingError as exc:
        if raise_if_failed is None:
            return None
        if raise_if_failed is ValuePicklingError:
            raise
        raise raise_if_failed(str(exc)) from exc.__cause__


@overload
def try_unpickle(
    data: bytes, raise_if_failed: type[CacheError] = ..., *, name: str = ...
) -> Any: ...
@overload
def try_unpickle(data: bytes, raise_if_failed: None, *, name: str = ...) -> Any | None: ...


def try_unpickle(
    data: bytes,
    raise_if_failed: type[CacheError] | None = ValueUnpicklingError,
    *,
    name: str = "value",
) -> Any:
    """Unpickle bytes made by :func:`try_pickle`. Only pass bytes you trust.

    Raises:
        raise_if_failed: chained to the unpickler's error (None returns None).
    """
    try:
        return load_parts(data, name=name)
    except ValueUnpicklingError as exc:
        if raise_if_failed is None:
            return None
        if raise_if_failed is ValueUnpicklingError:
            raise
        raise raise_if_failed(str(exc)) from exc.__cause__


# -- naming what failed ------------------------------------------------------

_MAX_DEPTH = 32
_MAX_CHILDREN = 10_000


def _type_name(obj: object) -> str:
    cls = type(obj)
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


def _probe(obj: object) -> BaseException | None:
    """Kept for callers that imported it before :func:`probe` was public."""
    return probe(obj, for_store=False)


def _children(obj: object) -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield f"[{index}]", value
        return
    if isinstance(obj, (set, frozenset)):
        for value in obj:
            yield ".<item>", value
        return
    yield from _state_children(obj)


def _state_children(obj: object) -> Iterator[tuple[str, object]]:
    try:
        reduced = obj.__reduce_ex__(PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - the object itself is then what failed
        del exc
        return
    if not isinstance(reduced, tuple) or len(reduced) < 3:
        return
    state = reduced[2]
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
        state = {**(state[0] or {}), **(state[1] or {})}
    if isinstance(state, dict):
        for attr, value in state.items():
            yield f".{attr}", value
    elif state is not None:
        yield ".__getstate__()", state
    args = reduced[1] if isinstance(reduced[1], tuple) else ()
    for index, arg in enumerate(args):
        yield f".__reduce__()[1][{index}]", arg


def _locate(obj: object, path: str, depth: int, seen: set[int]) -> tuple[str, object]:
    if depth >= _MAX_DEPTH or id(obj) in seen:
        return path, obj
    seen.add(id(obj))
    for count, (step, child) in enumerate(_children(obj)):
        if count >= _MAX_CHILDREN:
            break
        if _probe(child) is not None:
            return _locate(child, path + step, depth + 1, seen)
    return path, obj


def describe_unpicklable(obj: object, name: str = "value") -> str:
    """``"result['model'].session._lock (_thread.lock)"``: the innermost part that fails."""
    path, culprit = _locate(obj, name, 0, set())
    return f"{path} ({_type_name(culprit)})"


def _failure_message(obj: object, name: str, exc: BaseException) -> str:
    where = describe_unpicklable(obj, name)
    return (
        f"cannot pickle {where}: {exc}. To store it, leave that part out of the value, or "
        "give its class __getstate__/__reduce__."
    )
