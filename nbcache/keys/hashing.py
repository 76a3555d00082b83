"""Content digests of values: deterministic, type-tagged, fast on big data.

``digest(value)`` is the same for equal values in any process and different
for values that differ in type (under ``typed=True``), shape, order where order
matters, or data.  Array and frame buffers go straight through XXH3-128 at
memory speed, never through a pickle stream.

Optional libraries (numpy, pandas, pyarrow, polars) are recognised only when
they are already imported: a value of such a type cannot exist otherwise.

Objects with no rule of their own are walked through their public reduce
protocol (``__reduce_ex__``), the same parts pickle would save, hashed by
these rules.  A real pickle stream is not deterministic: ``reducer_override``
is never called for sets, whose pickled order follows the per-process string
hash seed.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import xxhash

from ..errors import KeyPicklingError

__all__ = ["HASH_VERSION", "Hasher", "describe", "digest", "module_version"]

# Part of every key: bump it when a rule below changes, so old keys miss
# instead of colliding.  Golden digests in the tests pin the rules.
HASH_VERSION = 1
_CHUNK = 1 << 22
_FLOAT = struct.Struct("<d")
_NAN = b"\x7f\xf8" + b"\x00" * 6


def digest(value: Any, *, typed: bool = True, name: str = "value") -> str:
    """The hex digest (32 characters) of ``value``'s content.

    Args:
        value: any value.
        typed: when False, equal numbers of different types (``1``, ``1.0``,
            ``True``) get one digest, as ``functools.lru_cache(typed=False)``
            treats them as one argument.
        name: what to call ``value`` in an error message.

    Raises:
        KeyPicklingError: some part of ``value`` cannot be hashed; the message
            names the path to it and its type.
    """
    hasher = Hasher(typed=typed)
    hasher.feed(value, name)
    return hasher.hexdigest()


def describe(value: Any) -> dict[str, Any]:
    """A short summary for "why did it miss": type, shape or length where known."""
    summary: dict[str, Any] = {"type": _type_name(type(value))}
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        summary["shape"] = list(shape)
    elif isinstance(value, (list, tuple, dict, set, frozenset, str, bytes)):
        summary["len"] = len(value)
    if isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 40):
        summary["repr"] = repr(value)
    return summary


def _type_name(cls: type) -> str:
    module = getattr(cls, "__module__", "?")
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


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
    except (metadata.PackageNotFoundError, IndexError):
        return "unknown"


class Hasher:
    """A streaming XXH3-128 over type-tagged parts; ``feed`` values, read ``hexdigest``."""

    def __init__(self, typed: bool = True) -> None:
        self.typed = typed
        self._h = xxhash.xxh3_128()
        self._active: dict[int, int] = {}  # id -> depth, for cycles on the current path

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())

    def tag(self, label: bytes) -> None:
        self._h.update(label)
        self._h.update(b"\x00")

    def raw(self, data: bytes | memoryview) -> None:
        self._h.update(struct.pack("<Q", len(data) if isinstance(data, bytes) else data.nbytes))
        self._h.update(data)

    def text(self, value: str) -> None:
        self.raw(value.encode("utf-8", "surrogatepass"))

    def sub_digest(self, value: Any, path: str) -> bytes:
        """The digest of ``value`` alone, sharing this hasher's settings and cycle guard."""
        sub = Hasher(self.typed)
        sub._active = self._active
        sub.feed(value, path)
        return bytes(sub._h.digest())

    @contextmanager
    def _visiting(self, obj: Any) -> Iterator[int | None]:
        key = id(obj)
        if key in self._active:
            yield self._active[key]
            return
        self._active[key] = len(self._active)
        try:
            yield None
        finally:
            del self._active[key]

    def feed(self, value: Any, path: str) -> None:
        """Add ``value`` to the digest; ``path`` names it in errors (``df['x']``)."""
        rule = _EXACT.get(type(value))
        if rule is not None:
            rule(self, value, path)
            return
        with self._visiting(value) as back_reference:
            if back_reference is not None:
                self.tag(b"cycle")
                self.raw(struct.pack("<Q", back_reference))
                return
            for matches, rule in _RULES:
                if matches(value):
                    rule(self, value, path)
                    return
            _feed_reduced(self, value, path)


# -- scalars and containers ---------------------------------------------------


def _feed_none(h: Hasher, value: None, path: str) -> None:
    h.tag(b"none")


def _feed_int(h: Hasher, value: int, path: str) -> None:
    if type(value) is bool and h.typed:
        h.tag(b"bool")
        h.raw(b"\x01" if value else b"\x00")
        return
    h.tag(b"int")
    h.raw(str(int(value)).encode())


def _feed_float(h: Hasher, value: float, path: str) -> None:
    if not h.typed and value.is_integer() and not (value == 0 and math.copysign(1, value) < 0):
        _feed_int(h, int(value), path)
        return
    h.tag(b"float")
    h.raw(_NAN if math.isnan(value) else _FLOAT.pack(value))


def _feed_complex(h: Hasher, value: complex, path: str) -> None:
    h.tag(b"complex")
    for part in (value.real, value.imag):
        h.raw(_NAN if math.isnan(part) else _FLOAT.pack(part))


def _feed_str(h: Hasher, value: str, path: str) -> None:
    h.tag(b"str")
    h.text(value)


def _feed_bytes(h: Hasher, value: bytes | bytearray, path: str) -> None:
    h.tag(b"bytes" if isinstance(value, bytes) else b"bytearray")
    h.raw(bytes(value) if isinstance(value, bytearray) else value)


def _feed_sequence(h: Hasher, value: list[Any] | tuple[Any, ...], path: str) -> None:
    h.tag(_type_name(type(value)).encode())
    h.raw(struct.pack("<Q", len(value)))
    for index, item in enumerate(value):
        h.feed(item, f"{path}[{index}]")


def _feed_unordered(h: Hasher, label: bytes, digests: Iterable[bytes]) -> None:
    ordered = sorted(digests)
    h.tag(label)
    h.raw(struct.pack("<Q", len(ordered)))
    for item in ordered:
        h.raw(item)


def _feed_dict(h: Hasher, value: dict[Any, Any], path: str, attrs: bool = False) -> None:
    """Order-independent; ``attrs`` names items ``.name`` in errors (an object's state)."""

    def where(key: Any) -> str:
        return f"{path}.{key}" if attrs and isinstance(key, str) else f"{path}[{key!r}]"

    pairs = (h.sub_digest(k, f"{path}.<key>") + h.sub_digest(v, where(k)) for k, v in value.items())
    _feed_unordered(h, _type_name(type(value)).encode(), pairs)


def _feed_set(h: Hasher, value: set[Any] | frozenset[Any], path: str) -> None:
    items = (h.sub_digest(item, f"{path}.<item>") for item in value)
    _feed_unordered(h, _type_name(type(value)).encode(), items)


_EXACT: dict[type, Callable[[Hasher, Any, str], None]] = {
    type(None): _feed_none,
    bool: _feed_int,
    int: _feed_int,
    float: _feed_float,
    complex: _feed_complex,
    str: _feed_str,
    bytes: _feed_bytes,
    bytearray: _feed_bytes,
}


# -- code, modules, classes ----------------------------------------------------


def _feed_global(h: Hasher, obj: Any, path: str) -> None:
    """A class, function or other named global: by module, name, and what it is."""
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?")
    if isinstance(obj, types.FunctionType) or (isinstance(obj, type) and _is_local(module)):
        from .code import fingerprint  # code fingerprints hash values with this module

        h.tag(b"code")
        h.text(fingerprint(obj))
        return
    h.tag(b"global")
    h.text(f"{module}:{name}@{module_version(module)}")


def _is_local(module: str) -> bool:
    from .code import is_local_module

    return is_local_module(module)


def _feed_module(h: Hasher, module: types.ModuleType, path: str) -> None:
    from .code import module_fingerprint

    h.tag(b"module")
    h.text(module_fingerprint(module))


def _feed_method(h: Hasher, method: types.MethodType, path: str) -> None:
    h.tag(b"method")
    h.feed(method.__func__, f"{path}.__func__")
    h.feed(method.__self__, f"{path}.__self__")


def _feed_dataclass(h: Hasher, value: Any, path: str) -> None:
    cls = type(value)
    h.tag(b"dataclass")
    _feed_global(h, cls, path)
    for f in dataclasses.fields(value):
        h.text(f.name)
        h.feed(getattr(value, f.name), f"{path}.{f.name}")


def _is_global(value: Any) -> bool:
    return isinstance(
        value,
        (type, types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType),
    )


def _is_wrapper(value: Any) -> bool:
    """A decorated function (functools.wraps, lru_cache, @memoize): its code is what counts."""
    return callable(value) and not isinstance(value, type) and hasattr(value, "__wrapped__")


def _feed_wrapper(h: Hasher, value: Any, path: str) -> None:
    import inspect

    h.tag(b"wrapper")
    h.text(_type_name(type(value)))
    _feed_global(h, inspect.unwrap(value), f"{path}.__wrapped__")


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


# -- anything else: the reduce protocol -----------------------------------------


def _feed_reduced(h: Hasher, value: Any, path: str) -> None:
    try:
        reduced = value.__reduce_ex__(4)
    except Exception as exc:
        raise KeyPicklingError(
            f"cannot hash `{path}` ({_type_name(type(value))}) for the cache key: {exc}."
        ) from exc
    if isinstance(reduced, str):  # a module-level singleton, saved by name
        h.tag(b"named")
        h.text(f"{getattr(value, '__module__', '?')}:{reduced}")
        return
    h.tag(b"reduce")
    callable_, args, *rest = reduced
    h.feed(callable_, f"{path}.__reduce__()[0]")
    h.feed(args, f"{path}.__reduce__()[1]")
    state = rest[0] if rest else None
    if type(state) is tuple and len(state) == 2 and isinstance(state[1], dict):
        state = {**(state[0] or {}), **state[1]}  # (__dict__, __slots__) as one mapping
    if type(state) is dict:
        _feed_dict(h, state, path, attrs=True)
    else:
        h.feed(state, f"{path}.__getstate__()")
    if len(rest) > 1 and rest[1] is not None:
        h.feed(list(rest[1]), f"{path}.<items>")
    if len(rest) > 2 and rest[2] is not None:
        h.feed(dict(rest[2]), f"{path}.<items>")


# -- optional libraries ---------------------------------------------------------


def _instance_of(module: str, *names: str) -> Callable[[Any], bool]:
    """A check that imports nothing: true only if ``module`` is loaded and matches."""

    def matches(value: Any) -> bool:
        mod = sys.modules.get(module)
        if mod is None:
            return False
        for name in names:
            cls: Any = mod
            for part in name.split("."):
                cls = getattr(cls, part, None)
            if isinstance(cls, type) and isinstance(value, cls):
                return True
        return False

    return matches


def _feed_buffer(h: Hasher, view: memoryview) -> None:
    view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
    h.raw(struct.pack("<Q", view.nbytes))
    for start in range(0, view.nbytes, _CHUNK):
        h._h.update(view[start : start + _CHUNK])


def _feed_ndarray(h: Hasher, array: Any, path: str) -> None:
    np = sys.modules["numpy"]
    h.tag(b"ndarray")
    h.text(str(array.dtype.descr) if array.dtype.fields else array.dtype.str)
    h.raw(struct.pack(f"<{array.ndim}Q", *array.shape))
    if array.dtype.hasobject:
        for index, item in enumerate(array.ravel(order="C")):
            h.feed(item, f"{path}.flat[{index}]")
        return
    if array.flags.c_contiguous:
        _feed_buffer(h, memoryview(array).cast("B") if array.size else memoryview(b""))
        return
    # Hash as the C-ordered copy would hash, a slab at a time.
    flat = array.reshape(array.shape[0], -1) if array.ndim > 1 else array
    rows = max(1, _CHUNK // max(1, flat[0:1].nbytes)) if len(flat) else 1
    h.raw(struct.pack("<Q", array.nbytes))
    for start in range(0, len(flat), rows):
        slab = np.ascontiguousarray(flat[start : start + rows])
        h._h.update(memoryview(slab).cast("B"))


def _feed_numpy_scalar(h: Hasher, value: Any, path: str) -> None:
    h.tag(b"npscalar")
    h.text(value.dtype.str)
    h.raw(value.tobytes())


from . import frames as _frames  # noqa: E402 - the frame rules need Hasher and _feed_ndarray

_RULES: list[tuple[Callable[[Any], bool], Callable[[Hasher, Any, str], None]]] = [
    (lambda v: isinstance(v, (list, tuple)), _feed_sequence),
    (lambda v: isinstance(v, dict), _feed_dict),
    (lambda v: isinstance(v, (set, frozenset)), _feed_set),
    (
        lambda v: isinstance(v, (str, bytes, bytearray, int, float)),
        lambda h, v, p: _subclass(h, v, p),
    ),
    (_instance_of("numpy", "ndarray"), _feed_ndarray),
    (_instance_of("numpy", "generic"), _feed_numpy_scalar),
    (_instance_of("pandas", "DataFrame"), _frames.feed_dataframe),
    (_instance_of("pandas", "Series"), _frames.feed_series),
    (_instance_of("pandas", "Index"), _frames.feed_index),
    (_instance_of("pyarrow", "Table", "RecordBatch"), _frames.feed_arrow_table),
    (_instance_of("pyarrow", "Array", "ChunkedArray"), _frames.feed_arrow_array),
    (_instance_of("polars", "DataFrame", "Series"), _frames.feed_polars),
    (lambda v: isinstance(v, types.ModuleType), _feed_module),
    (lambda v: isinstance(v, types.MethodType), _feed_method),
    (_is_global, _feed_global),
    (_is_wrapper, _feed_wrapper),
    (_is_dataclass_instance, _feed_dataclass),
]


def _subclass(h: Hasher, value: Any, path: str) -> None:
    """A subclass of a builtin (an IntEnum, a str subclass): its class, then reduce."""
    _feed_reduced(h, value, path)
