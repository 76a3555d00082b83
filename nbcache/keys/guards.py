"""The checks that tell a fingerprint still holds, as a list and as one compiled function.

Every in-memory hit of a memoized function re-runs them, so a redefined helper
or a rebound global misses on the very next call.  Run from the list, each
check is a Python call; after a fingerprint has held a few times its checks
are compiled into one function of ``is`` comparisons (``f.__code__ is c0 and
ns['THRESHOLD'] is v1 and ...``), one Python call per hit whatever the
number of dependencies.  Compiling costs more than running the list once, so a
fingerprint checked once or twice (a fresh kernel's first hit) never pays it.
Both forms check exactly the same things, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["MISSING", "Guards"]

MISSING = object()  # what a namespace gives for a name it no longer binds


class Guards:
    """The checks of one fingerprint: each added as a callable and as an expression."""

    def __init__(self) -> None:
        self.checks: list[Callable[[], bool]] = []
        self._parts: list[str] = []
        self._values: dict[str, Any] = {"M": MISSING}

    def _name(self, value: Any) -> str:
        name = f"v{len(self._values)}"
        self._values[name] = value
        return name

    def same_code(self, fn: Any, code: Any, defaults: Any, kwdefaults: Any) -> None:
        """``fn`` still has this code and these defaults (none reassigned)."""
        self.checks.append(
            lambda: (
                fn.__code__ is code
                and fn.__defaults__ is defaults
                and fn.__kwdefaults__ is kwdefaults
            )
        )
        f = self._name(fn)
        self._parts.append(
            f"{f}.__code__ is {self._name(code)} and {f}.__defaults__ is {self._name(defaults)} "
            f"and {f}.__kwdefaults__ is {self._name(kwdefaults)}"
        )

    def bound(self, namespace: dict[str, Any], name: str, value: Any) -> None:
        """``namespace`` still binds ``name`` to this very object."""
        self.checks.append(lambda: namespace.get(name, MISSING) is value)
        # A subscript, not a call of get: the compiled function catches the KeyError.
        self._parts.append(f"{self._name(namespace)}[{self._name(name)}] is {self._name(value)}")

    def unbound(self, namespace: dict[str, Any], name: str) -> None:
        """``namespace`` still does not bind ``name`` (a builtin or a later definition)."""
        self.checks.append(lambda: name not in namespace)
        self._parts.append(f"{self._name(name)} not in {self._name(namespace)}")

    def call(self, check: Callable[[], bool]) -> None:
        """Any other check: called as it is (a data global re-hashed, a class's members)."""
        self.checks.append(check)
        self._parts.append(f"{self._name(check)}()")

    def compiled(self) -> Callable[[], bool]:
        """One function that runs every check, in order, as one Python call."""
        body = " and ".join(f"({part})" for part in self._parts) or "True"
        source = (
            "def valid():\n"
            "    try:\n"
            f"        return {body}\n"
            "    except KeyError:\n"  # a global no longer bound
            "        return False\n"
        )
        namespace = dict(self._values)
        exec(compile(source, "<nbcache checks>", "exec"), namespace)
        valid: Callable[[], bool] = namespace["valid"]
        return valid
