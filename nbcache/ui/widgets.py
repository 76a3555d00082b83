"""nbcache's widgets, and the one decision of whether to show widgets or text.

Which one is decided explicitly, never guessed from what happens to be imported:
widgets when the shell is a Jupyter kernel and ipywidgets imports, text otherwise;
``NBCACHE_WIDGETS=1`` or ``0`` overrides it.  ipywidgets is imported only when a
widget is made.  The widgets themselves live in :mod:`nbcache.ui.cards` (the task
card), :mod:`nbcache.ui.status` (the status line) and :mod:`nbcache.ui.browser` (the
cache browser), all styled by :mod:`nbcache.ui.theme`.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import settings
from .browser import CacheBrowser
from .cards import TextCard, WidgetCard, make_card

__all__ = ["CacheBrowser", "TextCard", "WidgetCard", "browse", "make_card", "widgets_wanted"]


def widgets_wanted(shell: Any) -> bool:
    """Widgets in a Jupyter kernel with ipywidgets installed; NBCACHE_WIDGETS overrides."""
    forced = settings.widgets_forced()
    if forced is not None:
        return forced
    if type(shell).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def browse(cache: Any = None, widgets: bool | None = None) -> None:
    """Show the cache browser: a widget in a Jupyter kernel, a text table elsewhere.

    Args:
        cache: the cache to browse (default: the one ``%%cache`` uses).
        widgets: force the widget (True) or the text table (False); None decides as
            :func:`widgets_wanted` does.

    Returns None, as ``display`` does: what it shows is the answer, and a value
    returned as well would be shown a second time at the end of a cell.
    """
    from ..cache.default import default_cache
    from ..settings import max_size
    from .browser import browser_text
    from .cards import short_path

    cache = cache or default_cache()
    if widgets is None:
        widgets = widgets_wanted(_current_shell())
    if widgets:
        from IPython.display import display

        def show(obj: Any) -> Any:
            return display(obj, display_id=True)  # type: ignore[no-untyped-call]

        CacheBrowser(cache, show, max_size)
        return None
    store = cache.store
    where = short_path(str(store.location)) if store is not None else "memory only"
    print(browser_text(cache.ledger.records(), where, max_size()))
    return None


def _current_shell() -> Any:
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get() if get is not None else None
