"""The task card and the cache browser, rendered by JupyterLab in headless Chromium."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from .conftest import Lab

pytestmark = pytest.mark.browser


def test_task_cards_and_cache_browser(lab: Lab) -> None:
    """A background cell's card turns done; Cancel stops a long one; the cache browser
    lists the finished cell's entry and its Delete button removes it from the store."""
    token = uuid.uuid4().hex[:8]
    short = f"short{token}"
    cells = [
        "%load_ext nbcache\nimport time, nbcache",
        f"%%cache -b -n {short}\nfor i in nbcache.progress(range(10)):\n"
        "    time.sleep(0.1)\nprint('short task output')\nfinished = True",
        f"%%cache -b -n long{token}\nfor i in nbcache.progress(range(600)):\n    time.sleep(0.1)",
        f"%nbcache wait {short}",
        "%nbcache",
    ]
    page = lab.run_notebook(cells)
    cards = page.locator(".nbcache-card")
    expect(cards).to_have_count(2)
    first, second = cards.nth(0), cards.nth(1)
    expect(first.locator(".nbcache-card-state")).to_contain_text("done", timeout=20_000)
    expect(first.locator(".nbcache-card-bar .progress-bar")).to_have_attribute(
        "style", re.compile(r"100%")
    )
    expect(second.locator(".nbcache-card-state")).to_contain_text("running")
    lab.screenshot("cards-running")

    second.locator(".nbcache-card-cancel").click()
    expect(second.locator(".nbcache-card-state")).to_contain_text("cancelled", timeout=20_000)

    browser = page.locator(".nbcache-browser")
    expect(browser.locator(".nbcache-browser-table")).to_contain_text(short)
    lab.screenshot("cards-and-browser")
    choice = browser.locator(".nbcache-browser-choice select")
    entry = choice.locator("option", has_text=short).inner_text()
    choice.select_option(label=entry)
    browser.locator(".nbcache-browser-delete").click()
    expect(browser.locator(".nbcache-browser-message")).to_contain_text("deleted")
    expect(browser.locator(".nbcache-browser-table")).not_to_contain_text(short)
