"""Cache keys for calls, with a summary of what each key was made of.

A key is a digest of nbcache's key format, the function's identity and code
fingerprint, and each argument bound to the signature (defaults applied, so
``f(1)`` and ``f(x=1)`` are one key).  The summary records, per argument and
per code dependency, a short digest and a description, so that a miss can be
explained by comparing it with the summary of the entry made before.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import xxhash

from .._version import __version__
from ..errors import KeyPicklingError
from ..units import format_duration
from .classes import describe
from .code import Fingerprint, identity, short_name
from .hashing import HASH_VERSION, digest

__all__ = [
    "IMPORTS_ONLY",
    "NOCACHE",
    "CallKey",
    "bind_arguments",
    "call_digests",
    "call_key",
    "call_summary",
    "explain",
    "label_of",
    "restored_reason",
    "uncached_reason",
    "unknown_name",
]

NOCACHE = "it ran uncached: it begins with %%nocache"
IMPORTS_ONLY = (
    "it only imports: restoring it imports the same modules again, so caching it saves "
    "no time (leave it without %%cache)"
)

KEY_FORMAT = 1
"""How keys are put together; bumped only when that changes.  The on-disk format of
entries has its own number (``nbcache.entry.format.FORMAT``): a new way of writing
entries must not make every user's cache miss."""

KEY_VERSION = f"nbcache-key/{KEY_FORMAT}.{HASH_VERSION}"


@dataclass(frozen=True)
class CallKey:
    """A call's key and the summary "why did it miss" compares."""

    key: str
    summary: dict[str, Any]


def bind_arguments(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Arguments by parameter name with defaults applied; ``*args``/``**kw`` kept whole."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def call_key(
    fn: Any,
    fingerprint: Fingerprint,
    arguments: Mapping[str, Any],
    *,
    typed: bool = True,
    ignore: Iterable[str] = (),
) -> CallKey:
    """The key of calling ``fn`` with ``arguments`` (bound by :func:`bind_arguments`).

    Raises:
        KeyPicklingError: an argument cannot be hashed; the message names it.
    """
    key, digests = call_digests(fn, fingerprint, arguments, typed=typed, ignore=ignore)
    return CallKey(key, call_summary(fn, fingerprint, arguments, digests))


def call_digests(
    fn: Any,
    fingerprint: Fingerprint,
    arguments: Mapping[str, Any],
    *,
    typed: bool = True,
    ignore: Iterable[str] = (),
) -> tuple[str, dict[str, str]]:
    """:func:`call_key`'s key, and the digest of each argument in it by name, for
    :func:`call_summary` when the summary is wanted (a hit never wants it).

    Raises:
        KeyPicklingError: an argument cannot be hashed; the message names it.
    """
    skipped = set(ignore)
    h = xxhash.xxh3_128()
    for part in (KEY_VERSION, identity(fn), fingerprint.digest):
        h.update(part.encode())
        h.update(b"\x00")
    digests: dict[str, str] = {}
    for param, value in arguments.items():
        if param in skipped:
            continue
        try:
            part = digest(value, typed=typed, name=param)
        except KeyPicklingError as exc:
            raise type(exc)(
                f"{exc} Pass a value that can be pickled, or leave `{param}` out of the key "
                f"with ignore=({param!r},)."
            ) from exc
        h.update(param.encode())
        h.update(b"=")
        h.update(part.encode())
        digests[param] = part
    return h.hexdigest(), digests


def call_summary(
    fn: Any, fingerprint: Fingerprint, arguments: Mapping[str, Any], digests: Mapping[str, str]
) -> dict[str, Any]:
    """What :func:`call_key`'s key was made of, for "why did it miss": each argument in
    ``digests`` described as it is now."""
    name = identity(fn)
    return {
        "identity": name,
        "key_version": KEY_VERSION,
        "nbcache": __version__,
        "code": fingerprint.digest[:12],
        "deps": {
            _dep_label(d.name, d.via, name): [d.kind, d.digest[:12]]
            for d in fingerprint.dependencies
        },
        "args": {
            param: {**describe(arguments[param]), "digest": part[:12]}
            for param, part in digests.items()
        },
    }


def _dep_label(name: str, via: str, top: str) -> str:
    return name if not via or top.endswith(f":{via}") else f"{via}: {name}"


def _described(info: Mapping[str, Any]) -> str:
    if "shape" in info:
        return "x".join(str(n) for n in info["shape"])
    if "repr" in info:
        return str(info["repr"])
    if "len" in info:
        return f"len {info['len']}"
    return str(info.get("type", "?"))


def _arg_change(noun: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old.get("type") != new.get("type"):
        return f"{noun} `{name}` changed (type {old.get('type')} -> {new.get('type')})"
    before, after = _described(old), _described(new)
    if before != after:
        shape = "shape " if "shape" in old and "shape" in new else ""
        return f"{noun} `{name}` changed ({shape}{before} -> {after})"
    return f"{noun} `{name}` changed (same shape, different values)"


def _dep_change(label: str, kind: str) -> str:
    via, _, name = label.rpartition(": ")
    used = f" (used by `{via}()`)" if via else ""
    if kind == "code":
        return f"helper `{name}()` changed{used}"
    if kind == "module":
        return f"module `{name}` changed{used}"
    if kind in ("default", "closure"):
        return f"{kind} value `{name}` changed{used}"
    return f"global `{name}` changed{used}"


def explain(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], *, label: str | None = None
) -> list[str]:
    """What differs between two key summaries, in words, most telling first. A cell is
    named by ``label`` (its ``-n`` name or first code line), never by the id a front
    end filed it under, which the user never sees."""
    cell = current.get("kind") == "cell"
    noun = "input" if cell else "argument"
    identity = str(current.get("identity", "?:?"))
    if cell:
        what = f"the cell `{label or identity.removeprefix('cell: ')}`"
    else:
        what = f"`{short_name(identity)}()`"
    if previous is None:
        return [f"no earlier entry of {what} to compare with"]
    if previous.get("key_version") != current.get("key_version"):
        return ["nbcache's key format changed since the earlier entry"]
    reasons = []
    old_deps, new_deps = previous.get("deps", {}), current.get("deps", {})
    for label, (kind, part) in new_deps.items():
        if label not in old_deps:
            reasons.append(f"{what} now uses `{label}`")
        elif old_deps[label][1] != part:
            reasons.append(_dep_change(label, kind))
    reasons += [f"{what} no longer uses `{label}`" for label in old_deps if label not in new_deps]
    if previous.get("code") != current.get("code"):
        if cell:
            reasons.insert(0, "the cell's code changed")
        elif not reasons:
            reasons.append(f"the code of {what} changed")
    old_args, new_args = previous.get("args", {}), current.get("args", {})
    for arg, info in new_args.items():
        if arg not in old_args:
            reasons.append(f"{noun} `{arg}` is new")
        elif old_args[arg].get("digest") != info.get("digest"):
            reasons.append(_arg_change(noun, arg, old_args[arg], info))
    reasons += [f"{noun} `{arg}` is no longer read" for arg in old_args if arg not in new_args]
    if not reasons and previous.get("unloadable"):
        # the same key, found but not loadable here: say what stopped it
        text = str(previous["unloadable"]).rstrip(".")
        return [f"its stored entry no longer loads, so it ran again: {text}"]
    return reasons or ["nothing in the key differs from the earlier entry"]


def label_of(source: str) -> str:
    """A cell as the user knows it: its first line of code (a comment above it skipped),
    as listings and ``nbcache.keys.scope.analyze`` give it."""
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("#")), lines[0] if lines else "")
    return first[:80]


def restored_reason(created: float, compute_seconds: float) -> str:
    """``why`` after a hit: the last run restored, from the entry made when."""
    age = format_duration(max(0.0, time.time() - created))
    took = format_duration(compute_seconds)
    return f"it restored: its key matches the entry stored {age} ago, which took {took} to compute"


def uncached_reason(exc: BaseException) -> str:
    """``why`` after a cell ran uncached because of an input with no content to key."""
    return f"it ran uncached: {exc}"


def unknown_name(name: str, *, stored: bool) -> str:
    """``why NAME`` for a name no cell has run under in this session."""
    if stored:
        return (
            f"`{name}` has not run in this session; its entry is stored: run the cell, "
            f"then `%nbcache why {name}`"
        )
    return (
        f"no entry named `{name}`: give a cell's -n name, its first code line or a "
        "memoized function (see %nbcache list)"
    )
