"""The process-wide states nbcache records around each cell, in the order they are
read and applied, and how the standard library's are read and set.

Each read is cheap (a getter, a copy of a small dict) and happens only once the
library that keeps the state is imported; none of these functions imports one.
Libraries' states are read and set in :mod:`nbcache.run.libstates`. See
:mod:`nbcache.run.effects` for how they are recorded and applied, and
docs/effects.md for the list in words.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from typing import Any

from .libstates import (
    pandas_apply,
    pandas_read,
    printoptions_apply,
    rc_apply,
    rc_read,
    rc_reset,
    seterr_apply,
    sklearn_apply,
    tf_apply,
    tf_read,
    torch_apply,
    torch_cudnn_apply,
    torch_cudnn_read,
    torch_read,
)
from .state import UNSET, State, Unrestorable, loaded

__all__ = ["BUILT_IN"]


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
    return tuple(loaded("warnings").filters)


def _warnings_apply(value: Any) -> None:
    warnings = loaded("warnings")
    warnings.filters[:] = list(value)
    warnings._filters_mutated()  # drop the filters' cache


_STYLES = {"PercentStyle": "%", "StrFormatStyle": "{", "StringTemplateStyle": "$"}


def _handler(h: Any) -> Any:
    """A root handler as data that makes it again, or :class:`Unrestorable`."""
    logging = loaded("logging")
    opaque = Unrestorable(f"logging handler {type(h).__name__}", id(h))
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
    root = loaded("logging").root
    return (root.level, tuple(_handler(h) for h in root.handlers))


def _make_handler(spec: Any) -> Any:
    logging = loaded("logging")
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
    root = loaded("logging").root
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
        if isinstance(spec, Unrestorable):
            raise TypeError(f"{spec!r} cannot be made again")
        root.addHandler(_make_handler(spec))


_CONTEXT = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp")


def _decimal_read() -> Any:
    ctx = loaded("decimal").getcontext()
    traps = tuple(sorted(t.__name__ for t, on in ctx.traps.items() if on))
    return (*(getattr(ctx, a) for a in _CONTEXT), traps)


def _decimal_apply(value: Any) -> None:
    decimal = loaded("decimal")
    ctx = decimal.getcontext()
    *plain, traps = value
    for attr, v in zip(_CONTEXT, plain, strict=True):
        setattr(ctx, attr, v)
    for signal in list(ctx.traps):
        ctx.traps[signal] = signal.__name__ in traps


_LOCALE_CATEGORIES = ("LC_CTYPE", "LC_COLLATE", "LC_TIME", "LC_MONETARY", "LC_NUMERIC")


def _locale_read() -> Any:
    locale = loaded("locale")
    return tuple(locale.setlocale(getattr(locale, c)) for c in _LOCALE_CATEGORIES)


def _locale_apply(value: Any) -> None:
    locale = loaded("locale")
    for category, name in zip(_LOCALE_CATEGORIES, value, strict=True):
        locale.setlocale(getattr(locale, category), name)


BUILT_IN = [
    State("random", random.getstate, _random_apply, setting=False, what="`random`'s generator"),
    State(
        "numpy.random",
        lambda: loaded("numpy").random.get_state(),
        lambda v: loaded("numpy").random.set_state(v),
        module="numpy",
        setting=False,
        what="numpy's global random generator",
    ),
    State(
        "torch.random",
        lambda: loaded("torch").random.get_rng_state(),
        lambda v: loaded("torch").random.set_rng_state(v),
        module="torch",
        setting=False,
        what="torch's global random generator",
    ),
    State(
        "rcParams",
        rc_read,
        rc_apply,
        module="matplotlib",
        keyed=True,
        setting=False,
        what="matplotlib's settings (rcParams)",
        reset=rc_reset,
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
        lambda: loaded("numpy").get_printoptions(),
        printoptions_apply,
        module="numpy",
        keyed=True,
        what="numpy's print options",
    ),
    State(
        "numpy.seterr",
        lambda: loaded("numpy").geterr(),
        seterr_apply,
        module="numpy",
        keyed=True,
        what="numpy's floating-point error handling",
    ),
    State(
        "pandas.options",
        pandas_read,
        pandas_apply,
        module="pandas",
        keyed=True,
        what="pandas' options",
    ),
    State(
        "sklearn.config",
        lambda: loaded("sklearn").get_config(),
        sklearn_apply,
        module="sklearn",
        keyed=True,
        what="scikit-learn's config",
    ),
    State("torch.flags", torch_read, torch_apply, module="torch", keyed=True, what="torch's flags"),
    State(
        "torch.cudnn",
        torch_cudnn_read,
        torch_cudnn_apply,
        module="torch.backends.cudnn",
        keyed=True,
        what="torch's cuDNN flags",
    ),
    State(
        "tensorflow.config",
        tf_read,
        tf_apply,
        module="tensorflow",
        keyed=True,
        what="tensorflow's global config",
    ),
]
