"""The process-wide states nbcache records around each cell, and how each is read and set.

Each read is cheap (a getter, a copy of a small dict) and happens only once the
library that keeps the state is imported; none of these functions imports one.
See :mod:`nbcache.run.effects` for how they are recorded and applied, and
docs/effects.md for the list in words.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BUILT_IN", "UNSET", "State", "Unkept"]

UNSET = "<unset>"  # a key of a keyed state that the cell removed


class Unkept:
    """A read value that cannot be made again (a logging handler writing to a socket):
    a cell that changes a state to one of these runs every time. Equal when it stands
    for the same object, so an unchanged one is no change."""

    __slots__ = ("ident", "what")

    def __init__(self, what: str, ident: int = 0) -> None:
        self.what = what
        self.ident = ident

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unkept) and (other.what, other.ident) == (self.what, self.ident)

    def __hash__(self) -> int:
        return hash((self.what, self.ident))

    def __repr__(self) -> str:
        return f"<{self.what}>"


@dataclass(frozen=True)
class State:
    """One process-wide state: ``read()`` returns its value now (cheap; compared with
    ``==``; stored with an entry, so it must pickle), ``apply(value)`` sets it back.

    ``module``: read only once this module is imported (nothing here imports it).
    ``keyed``: ``read()`` returns a dict; only the keys a cell changed are stored and
    applied (``apply`` then gets those keys, removed ones as :data:`UNSET`).
    ``setting``: a setting later cells' results may depend on (print options, the
    recursion limit): the settings cells changed are an input of each later cell.
    ``delta``: what is stored of a change, from the value before and the value after
    (the working directory relative to where the cell started) or, for a keyed state,
    the keys that changed; default the value after, or those keys.
    ``reset``: sets the whole value back (a plan's undo); default ``apply``.
    """

    name: str
    read: Callable[[], Any]
    apply: Callable[[Any], None]
    module: str | None = None
    keyed: bool = False
    setting: bool = True
    what: str = ""
    delta: Callable[[Any, Any], Any] | None = None
    reset: Callable[[Any], None] | None = None

    @property
    def words(self) -> str:
        return self.what or f"`{self.name}`"


def _set(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if v != UNSET}


def _mod(name: str) -> Any:
    return sys.modules[name]


# -- the standard library ---------------------------------------------------------------


def _random_apply(value: Any) -> None:
    random.setstate(_tuples(value))


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples where a round trip through storage may give lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def _environ_read() -> Any:
    data = getattr(os.environ, "_data", None)  # encoded: copied without decoding each
    return data.copy() if isinstance(data, dict) else dict(os.environ)


def _text(value: Any) -> Any:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _environ_delta(before: Any, diff: Mapping[Any, Any]) -> Any:
    return {_text(k): _text(v) for k, v in diff.items()}


def _environ_apply(changes: Mapping[Any, Any]) -> None:
    for key, value in _environ_delta(None, changes).items():
        if value == UNSET:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _path_apply(value: Any) -> None:
    sys.path[:] = list(value)


def _cwd_delta(before: Any, after: Any) -> Any:
    # Relative to where the cell started, so a checkout in another folder restores too.
    if isinstance(before, str) and isinstance(after, str):
        return os.path.relpath(after, before)
    return after


def _warnings_read() -> Any:
    return tuple(_mod("warnings").filters)


def _warnings_apply(value: Any) -> None:
    warnings = _mod("warnings")
    warnings.filters[:] = list(value)
    warnings._filters_mutated()  # drop the filters' cache


_STYLES = {"PercentStyle": "%", "StrFormatStyle": "{", "StringTemplateStyle": "$"}


def _handler(h: Any) -> Any:
    """A root handler as data that makes it again, or :class:`Unkept`."""
    logging = _mod("logging")
    opaque = Unkept(f"logging handler {type(h).__name__}", id(h))
    fmt = h.formatter
    if h.filters or (fmt is not None and type(fmt) is not logging.Formatter):
        return opaque
    form = None
    if fmt is not None:
        form = (fmt._fmt, fmt.datefmt, _STYLES.get(type(fmt._style).__name__, "%"))
    if type(h) is logging.FileHandler:
        return ("file", h.baseFilename, h.mode, h.encoding, h.level, form)
    if type(h) is logging.StreamHandler:
        # made in a cached cell, it holds the tee that recorded the cell's output
        stream = getattr(h.stream, "wrapped", h.stream)
        for name in ("stderr", "stdout"):
            if stream is getattr(sys, name):
                return ("stream", name, None, None, h.level, form)
    return opaque


def _logging_read() -> Any:
    root = _mod("logging").root
    return (root.level, tuple(_handler(h) for h in root.handlers))


def _make_handler(spec: Any) -> Any:
    logging = _mod("logging")
    kind, target, mode, encoding, level, form = spec
    if kind == "file":
        h = logging.FileHandler(target, mode="a" if mode == "w" else mode, encoding=encoding)
    else:
        h = logging.StreamHandler(getattr(sys, target))
    h.setLevel(level)
    if form is not None:
        h.setFormatter(logging.Formatter(form[0], form[1], style=form[2]))
    return h


def _logging_delta(before: Any, after: Any) -> Any:
    """The level after, and the handlers added and removed: handlers the cell left alone
    (a test runner's, a kernel's) need not be made again."""
    if not isinstance(before, tuple):
        before = (None, ())
    added = tuple(h for h in after[1] if h not in before[1])
    removed = tuple(h for h in before[1] if h not in after[1])
    return ("changed", after[0], added, removed)


def _logging_apply(value: Any) -> None:
    root = _mod("logging").root
    if value[0] == "changed":
        _, level, added, removed = value
    else:  # the whole state: a plan puts back what was
        level, specs = value
        current = {_handler(h) for h in root.handlers}
        added = tuple(s for s in specs if s not in current)
        removed = tuple(s for s in current if s not in specs)
    root.setLevel(level)
    for h in list(root.handlers):
        spec = _handler(h)
        if spec in removed:
            root.removeHandler(h)
            if isinstance(spec, tuple) and spec[0] == "file":
                h.close()
    present = {_handler(h) for h in root.handlers}
    for spec in added:
        if spec in present:
            continue
        if isinstance(spec, Unkept):
            raise TypeError(f"{spec!r} cannot be made again")
        root.addHandler(_make_handler(spec))


_CONTEXT = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp")


def _decimal_read() -> Any:
    ctx = _mod("decimal").getcontext()
    traps = tuple(sorted(t.__name__ for t, on in ctx.traps.items() if on))
    return (*(getattr(ctx, a) for a in _CONTEXT), traps)


def _decimal_apply(value: Any) -> None:
    decimal = _mod("decimal")
    ctx = decimal.getcontext()
    *plain, traps = value
    for attr, v in zip(_CONTEXT, plain, strict=True):
        setattr(ctx, attr, v)
    for signal in list(ctx.traps):
        ctx.traps[signal] = signal.__name__ in traps


_LOCALE_CATEGORIES = ("LC_CTYPE", "LC_COLLATE", "LC_TIME", "LC_MONETARY", "LC_NUMERIC")


def _locale_read() -> Any:
    locale = _mod("locale")
    return tuple(locale.setlocale(getattr(locale, c)) for c in _LOCALE_CATEGORIES)


def _locale_apply(value: Any) -> None:
    locale = _mod("locale")
    for category, name in zip(_LOCALE_CATEGORIES, value, strict=True):
        locale.setlocale(getattr(locale, category), name)


# -- libraries ---------------------------------------------------------------------------


def _printoptions_apply(changes: Mapping[str, Any]) -> None:
    _mod("numpy").set_printoptions(**_set(changes))


def _seterr_apply(changes: Mapping[str, Any]) -> None:
    _mod("numpy").seterr(**_set(changes))


def _pandas_read() -> Any:
    config = sys.modules.get("pandas._config.config")
    options = getattr(config, "_global_config", None)
    out: dict[str, Any] = {}
    if isinstance(options, dict):
        _flatten(options, "", out)
    return out


def _flatten(tree: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[prefix + key] = value


def _pandas_apply(changes: Mapping[str, Any]) -> None:
    pandas = _mod("pandas")
    for key, value in _set(changes).items():
        try:
            pandas.set_option(key, value)
        except (KeyError, ValueError):  # an option this pandas does not have (OptionError)
            continue


def _sklearn_apply(changes: Mapping[str, Any]) -> None:
    sklearn = _mod("sklearn")
    for key, value in _set(changes).items():
        try:
            sklearn.set_config(**{key: value})
        except TypeError:  # a setting this scikit-learn does not have
            continue


def _torch_read() -> Any:
    torch = _mod("torch")
    return {
        "default_dtype": torch.get_default_dtype(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "num_threads": torch.get_num_threads(),
    }


def _torch_apply(changes: Mapping[str, Any]) -> None:
    torch = _mod("torch")
    changes = _set(changes)
    if "default_dtype" in changes:
        torch.set_default_dtype(changes["default_dtype"])
    if "deterministic" in changes or "deterministic_warn_only" in changes:
        torch.use_deterministic_algorithms(
            changes.get("deterministic", torch.are_deterministic_algorithms_enabled()),
            warn_only=changes.get(
                "deterministic_warn_only", torch.is_deterministic_algorithms_warn_only_enabled()
            ),
        )
    if "float32_matmul_precision" in changes:
        torch.set_float32_matmul_precision(changes["float32_matmul_precision"])
    if "num_threads" in changes:
        torch.set_num_threads(changes["num_threads"])


def _torch_cudnn_read() -> Any:
    cudnn = _mod("torch").backends.cudnn
    return {"benchmark": bool(cudnn.benchmark), "deterministic": bool(cudnn.deterministic)}


def _torch_cudnn_apply(changes: Mapping[str, Any]) -> None:
    cudnn = _mod("torch").backends.cudnn
    for key, value in _set(changes).items():
        setattr(cudnn, key, value)


_TF_FLAGS = {
    # name: (getter, setter) under tf.config
    "functions_run_eagerly": ("functions_run_eagerly", "run_functions_eagerly"),
    "soft_device_placement": ("get_soft_device_placement", "set_soft_device_placement"),
    "intra_op_threads": (
        "threading.get_intra_op_parallelism_threads",
        "threading.set_intra_op_parallelism_threads",
    ),
    "inter_op_threads": (
        "threading.get_inter_op_parallelism_threads",
        "threading.set_inter_op_parallelism_threads",
    ),
}


def _tf_attr(path: str) -> Any:
    value = _mod("tensorflow").config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _tf_read() -> Any:
    return {name: _tf_attr(get)() for name, (get, _) in _TF_FLAGS.items()}


def _tf_apply(changes: Mapping[str, Any]) -> None:
    for name, value in _set(changes).items():
        if name in _TF_FLAGS:
            _tf_attr(_TF_FLAGS[name][1])(value)


def _rc_read() -> Any:
    rc = getattr(sys.modules.get("matplotlib"), "rcParams", None)
    if not isinstance(rc, dict):
        return {}
    # the stored values, without RcParams.__getitem__ (which resolves the backend); a
    # backend not chosen yet is a sentinel object, no setting (and unlike in any process)
    out = dict(dict.items(rc))
    if not isinstance(out.get("backend", ""), str):
        del out["backend"]
    return out


def _rc_apply(changes: Mapping[str, Any]) -> None:
    _mod("matplotlib").rcParams.update(_set(changes))


def _rc_reset(value: Mapping[str, Any]) -> None:
    dict.update(_mod("matplotlib").rcParams, _set(value))  # as it was, without re-validating


BUILT_IN = [
    State("random", random.getstate, _random_apply, setting=False, what="`random`'s generator"),
    State(
        "numpy.random",
        lambda: _mod("numpy").random.get_state(),
        lambda v: _mod("numpy").random.set_state(v),
        module="numpy",
        setting=False,
        what="numpy's global random generator",
    ),
    State(
        "torch.random",
        lambda: _mod("torch").random.get_rng_state(),
        lambda v: _mod("torch").random.set_rng_state(v),
        module="torch",
        setting=False,
        what="torch's global random generator",
    ),
    State(
        "rcParams",
        _rc_read,
        _rc_apply,
        module="matplotlib",
        keyed=True,
        setting=False,
        what="matplotlib's settings (rcParams)",
        reset=_rc_reset,
    ),
    State("sys.path", lambda: list(sys.path), _path_apply, setting=False, what="`sys.path`"),
    State(
        "os.environ",
        _environ_read,
        _environ_apply,
        keyed=True,
        delta=_environ_delta,
        setting=False,
        what="`os.environ`",
    ),
    State(
        "cwd",
        os.getcwd,
        os.chdir,
        setting=False,
        what="the working directory",
        delta=_cwd_delta,
    ),
    State(
        "recursionlimit", sys.getrecursionlimit, sys.setrecursionlimit, what="the recursion limit"
    ),
    State(
        "warnings", _warnings_read, _warnings_apply, module="warnings", what="the warnings filters"
    ),
    State(
        "logging",
        _logging_read,
        _logging_apply,
        module="logging",
        delta=_logging_delta,
        what="the root logger's level and handlers",
    ),
    State(
        "decimal",
        _decimal_read,
        _decimal_apply,
        module="decimal",
        what="`decimal`'s context",
    ),
    State("locale", _locale_read, _locale_apply, module="locale", what="the locale"),
    State(
        "numpy.printoptions",
        lambda: _mod("numpy").get_printoptions(),
        _printoptions_apply,
        module="numpy",
        keyed=True,
        what="numpy's print options",
    ),
    State(
        "numpy.seterr",
        lambda: _mod("numpy").geterr(),
        _seterr_apply,
        module="numpy",
        keyed=True,
        what="numpy's floating-point error handling",
    ),
    State(
        "pandas.options",
        _pandas_read,
        _pandas_apply,
        module="pandas",
        keyed=True,
        what="pandas' options",
    ),
    State(
        "sklearn.config",
        lambda: _mod("sklearn").get_config(),
        _sklearn_apply,
        module="sklearn",
        keyed=True,
        what="scikit-learn's config",
    ),
    State(
        "torch.flags", _torch_read, _torch_apply, module="torch", keyed=True, what="torch's flags"
    ),
    State(
        "torch.cudnn",
        _torch_cudnn_read,
        _torch_cudnn_apply,
        module="torch.backends.cudnn",
        keyed=True,
        what="torch's cuDNN flags",
    ),
    State(
        "tensorflow.config",
        _tf_read,
        _tf_apply,
        module="tensorflow",
        keyed=True,
        what="tensorflow's global config",
    ),
]
