"""A background cell outlives its page: a reload, or the tab closed and the notebook opened
again, shows the live card, still updating, with all of its output."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Locator, expect

from .conftest import Lab

pytestmark = pytest.mark.browser

STEPS = 600  # a tenth of a second each: the task outlives a reload and a reopen


def _cells(token: str) -> list[str]:
    return [
        "%load_ext nbcache\nimport time, nbcache",
        f"%%cache -b -n nightly_refresh\ntag = '{token}'\n"
        f"for i in nbcache.progress(range({STEPS})):\n    time.sleep(0.1)\n"
        "    print(f'batch {i:03d} loaded')",
    ]


def _done_steps(card: Locator) -> int:
    found = re.match(r"([\d,]+) / ", card.locator(".nbcache-card-count").inner_text())
    assert found, card.inner_text()
    return int(found.group(1).replace(",", ""))


def _live(card: Locator) -> int:
    """Check ``card`` is the running card with its whole output so far and still moving;
    the steps it had done when first looked at."""
    expect(card.locator(".nbcache-card-state")).to_have_text("running")
    output = card.locator(".nbcache-card-output")
    expect(output).to_contain_text("batch 000 loaded")  # the output from the start
    first = _done_steps(card)
    expect(output).to_contain_text(f"batch {first + 3:03d} loaded", timeout=10_000)
    deadline = time.monotonic() + 5
    while _done_steps(card) <= first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _done_steps(card) > first  # the bar and the count move too
    return first


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_live_card_survives_reload_and_reopen(lab: Lab, frontend: str) -> None:
    """Save, reload: the card is back, live, with all its output; close the tab and open
    the notebook in a new one: the same, and its Cancel still stops the task."""
    lab.use(frontend, "light")
    page = lab.run_notebook(_cells(uuid.uuid4().hex[:8]))
    card = page.locator(".nbcache-card")
    expect(card.locator(".nbcache-card-output")).to_contain_text("batch 010 loaded")
    lab.save()  # what a user's autosave or Ctrl+S does; the card's state lives in the kernel
    before = _done_steps(card)

    page.reload()
    lab.open(lab.opened[-1])
    after_reload = _live(page.locator(".nbcache-card"))
    assert after_reload >= before

    page.close()
    tab = lab.page = page.context.new_page()
    lab.open(lab.opened[-1])
    card = tab.locator(".nbcache-card")
    assert _live(card) >= after_reload
    lab.screenshot("reopened")

    # The reopened card still talks to the kernel both ways: Cancel stops the task.
    card.locator(".nbcache-card-cancel").click()
    expect(card.locator(".nbcache-card-state")).to_have_text("cancelled", timeout=20_000)
    expect(card.locator(".nbcache-card-cancel")).to_have_count(0)
    text = card.locator(".nbcache-card-output").inner_text()
    last = max(int(n) for n in re.findall(r"batch (\d+) loaded", text))
    assert last > after_reload
    assert all(f"batch {i:03d} loaded" in text for i in range(last + 1)), text[-400:]
