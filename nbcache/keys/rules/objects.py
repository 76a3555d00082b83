"""Hashing rules for everything else: plain objects, decorated callables, tensors, reduce.

- A plain object (pickled as its class and ``__dict__``): the class and the
  dict in order, without building a reduction.
- A callable with ``__wrapped__`` (``lru_cache``, ``@memoize``): what it wraps.
- A tensor with ``__dlpack__`` (torch, jax, cupy on the CPU): its buffer.
- The global generators of ``random`` and ``numpy.random``: by name.
- A library's known work buffers (allocated empty, written before each
  read): by dtype and shape, not by the allocator's leftovers.
- Anything else: the public reduce protocol (``copyreg.dispatch_table``, then
  ``__reduce_ex__(4)``), the same parts pickle would save, hashed by the
  other rules, plus the instance ``__dict__`` when a reduction inherited from
  a base class leaves it out; an object whose reduction fails but that
  offers a buffer, by its bytes.  A real pickle stream would not be
  deterministic: ``reducer_override`` is never called for sets, whose
  pickled order follows the per-process string hash seed.
"""

from __future__ import annotations

import copyreg
import sys
from typing import Any

from ...errors import KeyPicklingError
from ..classes import Matcher, has_attr, instance_dict, loaded_class, type_name
from ..hashing import module_version
from ..node import Node, Parts, Rule
from .containers import items_parts

__all__ = ["RULES"]

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement, not a builtin


def _wrapped_of(value: Any) -> Any:
    state = instance_dict(value)
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
    own = instance_dict(value) or {}
    for attr in ("dtype", "device", "requires_grad", "layout"):
        if has_attr(type(value), attr) or attr in own:
            n.text(f"{attr}={getattr(value, attr, None)!s}")
    yield array, ".__dlpack__()"


# The generators behind ``random.random()`` and ``np.random.normal()``, seeded
# from the OS in each process.  They are module state, like the modules that
# own them: a value holding one (a frozen scipy distribution, ``random.choice``)
# keys on its name, as a cell calling ``np.random.normal`` does; the state is an
# input of the cells that draw from it (``run/effects.py``), not of every value.
_GLOBAL_GENERATORS = (("random", "_inst"), ("numpy.random.mtrand", "_rand"))


def _global_generator(value: Any) -> str | None:
    for module, attr in _GLOBAL_GENERATORS:
        if getattr(sys.modules.get(module), attr, None) is value:
            return f"{module}.{attr}"
    return None


# Work buffers a library allocates with ``np.empty`` and fills in full before
# each read (statsmodels' GLM keeps one for the ``out=`` of ``hessian``, which an
# IRLS fit never calls): their bytes are what the allocator left there, addresses
# among them, so they differ in every process though no result depends on them.
# They key by dtype and shape.  (module, class) -> attribute names; subclasses too.
_SCRATCH: dict[tuple[str, str], frozenset[str]] = {
    ("statsmodels.genmod.generalized_linear_model", "GLM"): frozenset({"_tmp_like_exog"}),
}
_SCRATCH_BY_TYPE: dict[type, frozenset[str]] = {}


def _scratch_of(cls: type) -> frozenset[str]:
    known = _SCRATCH_BY_TYPE.get(cls)
    if known is None:
        # Asked only once an instance exists, so its library is imported already.
        known = frozenset().union(
            *(
                names
                for (module, name), names in _SCRATCH.items()
                if (base := loaded_class(module, name)) is not None and issubclass(cls, base)
            )
        )
        _SCRATCH_BY_TYPE[cls] = known
    return known


def _state_parts(n: Node, cls: type, state: dict[str, Any]) -> Parts:
    """An instance's attributes in order; a known work buffer by its dtype and shape only."""
    items = list(state.items())
    scratch = _scratch_of(cls)
    if scratch:
        ndarray = getattr(sys.modules.get("numpy"), "ndarray", None)
        kept = []
        for key, item in items:
            if key in scratch and ndarray is not None and type(item) is ndarray:
                n.tag(b"scratch")
                n.text(f"{key}|{item.dtype.str}|{item.shape}")
            else:
                kept.append((key, item))
        items = kept
    yield from items_parts(n, items, attrs=True)


def _reduce_rule(n: Node, value: Any) -> Parts | None:
    cls = type(value)
    generator = _global_generator(value)
    if generator is not None:
        n.tag(b"global-generator")
        n.text(generator)
        return None
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
    if state is value and isinstance(state, dict):
        # A dict whose __dict__ is itself (statsmodels' and sklearn's Bunch): pickling
        # restores it with a separate, equal __dict__, so hash the mapping, not the cycle.
        state = dict(state)
    if state is None and _reduce_is_inherited(type(value)):
        # A reduction a subclass inherits (a Counter subclass's) leaves out the
        # attributes the subclass adds: the key would be blind to them.  A
        # class that writes its own __reduce__ says what it is made of.
        state = instance_dict(value) or None
    if type(state) is dict:
        n.tag(b"state")
        yield from _state_parts(n, type(value), state)
    else:
        yield state, ".__getstate__()"
    if listitems is not None:
        yield list(listitems), ".<items>"
    if dictitems is not None:
        n.tag(b"dictitems")
        yield from items_parts(n, list(dictitems), attrs=False)
    if setter is not None:
        yield setter, ".<state setter>"


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
    bases = cls.__mro__[:-1]
    if not all(k.__flags__ & _HEAPTYPE for k in bases):
        return False  # a list or dict subclass: its items are not in its __dict__
    if any("__slots__" in vars(k) for k in bases):
        return False
    return any("__dict__" in vars(k) for k in bases)


def _object_rule(n: Node, value: Any) -> Parts:
    state = instance_dict(value) or {}
    wrapped = state.get("__wrapped__")
    if wrapped is not None and callable(value):
        yield from _wrapper_parts(n, value, wrapped)
        return
    n.tag(b"object")
    yield type(value), ".__class__"
    yield from _state_parts(n, type(value), state)


RULES: tuple[tuple[Matcher, Rule], ...] = (
    (_is_plain_object, _object_rule),
    (lambda c: True, _reduce_rule),  # the fallback: last
)
