"""A cell's text parsed a moment ago, kept for its analysis (:func:`nbcache.keys.scope.analyze`).

Auto mode parses each cell it wraps, to leave one that does not parse to IPython;
the analysis of the same text a moment later takes that tree instead of parsing the
text a second time. Only a tree equal to ``ast.parse(text)`` is kept (one parsed
under no ``__future__`` flag: a flag such as ``barry_as_FLUFL`` changes what parses);
it is taken once, by text, and only the last one is kept.
"""

from __future__ import annotations
import __future__

import ast
import functools

__all__ = ["FUTURE_FLAGS", "keep", "parsed"]

FUTURE_FLAGS = functools.reduce(
    lambda flags, name: flags | getattr(__future__, name).compiler_flag,
    __future__.all_feature_names,
    0,
)
_KEPT: dict[str, ast.Module] = {}


def keep(text: str, tree: ast.Module) -> None:
    """``tree`` is ``ast.parse(text)``, made a moment ago: the next :func:`parsed` of
    ``text`` takes it."""
    _KEPT.clear()
    _KEPT[text] = tree


def parsed(text: str) -> ast.Module:
    """The tree kept of ``text`` (then no longer kept), else ``ast.parse(text)``.

    Raises:
        SyntaxError: the text does not parse.
    """
    tree = _KEPT.pop(text, None)
    return tree if tree is not None else ast.parse(text)
