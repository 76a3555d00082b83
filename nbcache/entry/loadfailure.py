"""What a stored value that does not load here says: one line, naming the cause and
that the value will be recomputed."""

from __future__ import annotations

import re

__all__ = ["why_unloadable"]

# pickle's words for a class or function its module no longer has
_GONE = re.compile(r"Can't get attribute '(?P<name>[^']+)' on <module '(?P<module>[^']+)'")


def why_unloadable(name: str, exc: BaseException) -> str:
    """The message for ``exc``, raised while ``name`` was unpickled from verified bytes."""
    if isinstance(exc, ModuleNotFoundError):
        return (
            f"cannot load {name}: it needs the module {exc.name!r}, which is not importable "
            "here. Install it, or recompute the value."
        )
    gone = _GONE.match(str(exc)) if isinstance(exc, AttributeError) else None
    if gone is not None:
        return (
            f"cannot load {name}: `{gone['module']}.{gone['name']}`, which it was made with, "
            "no longer exists here (renamed or moved since); it will be recomputed."
        )
    # one line: a library's message may span several (patsy points at the formula)
    said = " ".join(f"{type(exc).__name__}: {exc}".split())
    said = said if len(said) <= 240 else said[:237] + "..."
    missing = _missing_name(exc)
    if missing is not None:
        return (
            f"cannot load {name}: it evaluates code naming `{missing}` as it loads, which is "
            f"not defined here yet ({said}); it will be recomputed."
        )
    return (
        f"cannot load {name}: {said}. The stored value was made with code that differs "
        "from what is installed now; it will be recomputed."
    )


def _missing_name(exc: BaseException) -> str | None:
    """The name a NameError in ``exc``'s chain could not find (patsy wraps it)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NameError) and isinstance(cause.name, str):
            return cause.name
        cause = cause.__cause__ or cause.__context__
    return None
