"""Process-wide state that cached cells record and restore: register your own.

A library or a notebook that keeps a global setting nbcache does not know
registers it once, with a cheap way to read it and one to set it back::

    import nbcache.effects

    nbcache.effects.register(
        "mylib.mode", mylib.get_mode, mylib.set_mode, module="mylib"
    )

A cell that changes it then stores the new value with its entry, and a hit sets
it again before the next cell runs. See docs/effects.md.
"""

from __future__ import annotations

from .run.effects import EffectsError, State, Unrestorable, register, registered, unregister
from .run.state import UNSET

__all__ = ["UNSET", "EffectsError", "State", "Unrestorable", "register", "registered", "unregister"]
