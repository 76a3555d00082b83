"""The installed version of the distribution behind a module: what installed code keys on.

Kept apart from the walk in :mod:`nbcache.keys.hashing`, which re-exports
:func:`module_version` for the rules.
"""

from __future__ import annotations

import sys

__all__ = ["module_version"]


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
    except (metadata.PackageNotFoundError, IndexError, ValueError):
        return "unknown"
