"""The README's pictures, made from the tutorial notebook itself in JupyterLab, light and
dark: the background cell's card and the cache browser.

Each run saves them in ``artifacts/``; with ``NBCACHE_README_IMAGES=1`` they also replace
the ones in ``docs/images/`` (``task-card-<theme>.png``, ``cache-browser-<theme>.png``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Locator, expect

from .conftest import ARTIFACTS, Lab, overflows

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "notebooks" / "quickstart.ipynb"
IMAGES = REPO / "docs" / "images"


def _tutorial_in(lab: Lab, folder: str) -> str:
    """The tutorial, in a folder of its own (so its own ``.nbcache``), with a last
    ``%nbcache`` cell to show the browser if it has none; its path on the server."""
    nb = nbformat.read(TUTORIAL, as_version=4)
    sources = [cell.source.strip() for cell in nb.cells if cell.cell_type == "code"]
    if "%nbcache" not in sources:
        last = max(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
        nb.cells.insert(last + 1, nbformat.v4.new_code_cell("%nbcache"))
    (lab.server.root / folder).mkdir(exist_ok=True)
    path = f"{folder}/quickstart.ipynb"
    nbformat.write(nb, lab.server.root / path)
    return path


def _index(lab: Lab, starts: str) -> int:
    cells = lab.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    for i in range(cells.count()):
        if cells.nth(i).locator(".jp-InputArea-editor").inner_text().strip().startswith(starts):
            return i
    raise AssertionError(f"no cell starts with {starts!r}")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_readme_images_from_the_tutorial(lab: Lab, theme: str) -> None:
    """The tutorial runs through; its card and browser fit and show realistic names only."""
    lab.use("lab", theme)
    lab.page.set_viewport_size({"width": 1100, "height": 1000})
    lab.open(_tutorial_in(lab, f"tutorial-{theme}"))
    lab.collapse_left()
    lab.run_all(timeout=180_000)

    card_cell = lab.cell(_index(lab, "%%cache -b -n bootstrap"))
    card = card_cell.locator(".nbcache-card")
    expect(card.locator(".nbcache-card-state")).to_have_text("done", timeout=60_000)
    expect(card.locator(".nbcache-card-result")).to_contain_text("stored in .nbcache")
    _check(card)
    _shoot(card_cell, f"task-card-{theme}.png")

    # What the tutorial asks next: restart the kernel and run everything again, so the
    # browser shows entries that were used again and the time they saved.
    lab.restart_kernel()
    lab.run_all(timeout=180_000)
    browser_cell = lab.cell(_last_browser(lab))
    browser = browser_cell.locator(".nbcache-browser")
    expect(browser.locator(".nbcache-browser-row:visible").first).to_be_visible()
    expect(browser.locator(".nbcache-browser-totals")).to_contain_text("they have saved")
    _check(browser)
    _shoot(browser_cell, f"cache-browser-{theme}.png")


def _check(widget: Locator) -> None:
    assert overflows(widget) == []
    assert "/tmp" not in widget.inner_text() and "pytest" not in widget.inner_text()


def _shoot(cell: Locator, name: str) -> None:
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=ARTIFACTS / name)
    if os.environ.get("NBCACHE_README_IMAGES") == "1":
        shutil.copyfile(ARTIFACTS / name, IMAGES / name)


def _last_browser(lab: Lab) -> int:
    cells = lab.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    for i in reversed(range(cells.count())):
        if cells.nth(i).locator(".nbcache-browser").count():
            return i
    raise AssertionError("no cell shows the cache browser\n" + lab.describe())
