"""The task card in every state, in JupyterLab 4 and Notebook 7, light and dark."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, Lab, contrast, overflows

pytestmark = pytest.mark.browser

FRONTS = [("lab", "light"), ("lab", "dark"), ("notebook", "light"), ("notebook", "dark")]
LONG_NAME = "bootstrap_confidence_intervals_for_every_region_and_every_month_of_2026"


def _cells(token: str) -> list[str]:
    return [
        "%load_ext nbcache\nimport time, nbcache\nfrom IPython.display import display\n"
        "from nbcache.tasks.task import Task\nfrom nbcache.ui.cards import make_card",
        # A task no worker has picked up yet: the card of a queued cell.
        "waiting = Task('load_features')\ncard = make_card(waiting, True, display, print)",
        f"%%cache -b -n summary_table\ntag = '{token}'\nfor i in nbcache.progress(range(10)):\n"
        "    time.sleep(0.05)\nprint('rows: 10')\ntotal = sum(range(10))",
        f"%%cache -b -n fit_baseline\ntag = '{token}'\nfor i in nbcache.progress(range(5)):\n"
        "    time.sleep(0.05)\n"
        "raise ValueError('the target column \"churn\" has no positive rows')",
        f"%%cache -b -n {LONG_NAME}\ntag = '{token}'\n"
        "for i in nbcache.progress(range(3000)):\n    time.sleep(0.1)\n"
        "    if i % 5 == 0:\n        print(f'resample {i}')",
        "%nbcache wait summary_table\n%nbcache wait fit_baseline",
    ]


def _fits(lab: Lab, where: str) -> None:
    for index in range(lab.page.locator(".nbcache-card").count()):
        card = lab.page.locator(".nbcache-card").nth(index)
        assert overflows(card) == [], f"card {index} at {where}"


@pytest.mark.parametrize(("frontend", "theme"), FRONTS)
def test_card_in_every_state(lab: Lab, frontend: str, theme: str) -> None:
    """Queued, running, done, failed and cancelled cards: a chip says the state, Cancel is
    there only while it can act, the running card counts and estimates, the done card
    names what it stored, the failed one shows its error; no text overflows at any
    width from 400 px up; the colours follow the theme."""
    lab.use(frontend, theme)
    page = lab.run_notebook(_cells(uuid.uuid4().hex[:8]))
    cards = page.locator(".nbcache-card")
    expect(cards).to_have_count(4)
    queued, done, failed, running = (cards.nth(i) for i in range(4))
    chip = ".nbcache-card-state"
    cancel = ".nbcache-card-cancel"

    expect(queued.locator(chip)).to_have_text("queued")
    expect(queued.locator(cancel)).to_be_visible()
    expect(done.locator(chip)).to_have_text("done")
    expect(done.locator(cancel)).to_have_count(0)
    expect(done.locator(".nbcache-card-result")).to_have_text(
        re.compile(r"computed total, tag, i · \d+(\.\d)? [KM]?B stored in \.nbcache$")
    )
    expect(done.locator(".nbcache-card-count")).to_have_text("10 / 10")
    expect(failed.locator(chip)).to_have_text("failed")
    expect(failed.locator(cancel)).to_have_count(0)
    expect(failed.locator(".nbcache-card-error")).to_have_text(
        'ValueError: the target column "churn" has no positive rows'
    )
    expect(failed.locator(".nbcache-card-tb")).to_contain_text("raise ValueError")
    expect(failed.locator(".nbcache-card-tb")).to_contain_text('File "Cell In[')

    expect(running.locator(chip)).to_have_text("running")
    expect(running.locator(cancel)).to_be_visible()
    expect(running.locator(".nbcache-card-count")).to_have_text(
        re.compile(r"^\d+ / 3,000 · \d+\.\d it/s$")
    )
    expect(running.locator(".nbcache-card-time")).to_have_text(
        re.compile(r"^elapsed .+ · about .+ left$")
    )
    expect(running.locator(".nbcache-card-output")).to_contain_text("resample 5")
    name = running.locator(".nbcache-card-name")
    assert name.get_attribute("title") == LONG_NAME
    assert name.inner_text() == LONG_NAME  # the whole name is there; CSS ellipsizes it

    _fits(lab, "1280 px")
    if theme == "dark":
        for card in (queued, done, failed, running):
            assert contrast(card.locator(chip)) >= 3.0, card.locator(chip).inner_text()
            assert contrast(card.locator(".nbcache-card-time")) >= 4.5
    running.screenshot(path=ARTIFACTS / f"{lab.prefix}-running.png")
    widths = []
    lab.collapse_left()
    for width in (1000, 700, 420):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)
        widths.append(running.evaluate("(el) => el.getBoundingClientRect().width"))
        _fits(lab, f"a {width} px window, the card {widths[-1]} px wide")
    assert min(widths) <= 400 < max(widths), widths  # 400 px and less was tried
    page.set_viewport_size({"width": 1280, "height": 900})

    running.locator(cancel).click()
    expect(running.locator(chip)).to_have_text("cancelled", timeout=20_000)
    expect(running.locator(cancel)).to_have_count(0)
    expect(running.locator(".nbcache-card-time")).to_have_text(re.compile(r"^cancelled after "))
    _fits(lab, "1280 px, all ended")
    lab.screenshot("cards")
