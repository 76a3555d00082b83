"""The cache browser and a failed card as a new user meets them, in JupyterLab 4 and
Notebook 7, light and dark: whole names at every width (stacked rows on a narrow page,
never a sideways scroll), a code column that says what made each entry, Refresh, a
Delete question that reads as a sentence, readable colours, nbcache's stderr warnings
wrapped at spaces, and a saved notebook whose card says how its task ended."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import Locator, expect

from .conftest import Lab, contrast, overflows

pytestmark = pytest.mark.browser

FRONTS = [("lab", "light"), ("lab", "dark"), ("notebook", "light"), ("notebook", "dark")]
LONG = "customer_segments_by_day"  # 24 characters


def _cells(folder: str) -> list[str]:
    return [
        f"%load_ext nbcache\n%nbcache dir {folder}",
        f"%%cache -n {LONG}\nsegments = list(range(10))",
        "%%cache -n w\nweights = [0.25] * 4",
        # a value that cannot be pickled: the long warning, on stderr
        "%%cache\nimport threading\n"
        "a_lock_that_guards_the_shared_feature_table_of_this_notebook = threading.Lock()\n"
        "n = 1",
        "from nbcache import memoize\n\n@memoize\ndef scaled(a, n=1):\n    return a * n\n\n"
        "scaled(3, n=2)",
        "%%cache -b -n fit_baseline\nprint('one')\n"
        "raise ValueError('the target column has no positive rows')",
        "%nbcache wait fit_baseline",
        "%nbcache",
        "%%cache -n added_after_the_browser\nlate = 1",  # only a Refresh shows it
    ]


# Words of an element's text that the browser broke across two lines.
_SPLIT_WORDS = """(el) => {
  const split = [];
  const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    const re = /\\S+/g;
    let m;
    while ((m = re.exec(node.data))) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (tops.size > 1 && m[0].length < 40) split.push(m[0]);
    }
  }
  return split;
}"""

_CLIPPED = """(el) => [...el.querySelectorAll('.nbcache-cols > .nbcache-name')]
  .filter((e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .map((e) => `${e.innerText}: ${e.scrollWidth} > ${e.clientWidth}`)"""

_SIDEWAYS = """(el) => [el, ...el.querySelectorAll('*')]
  .filter((e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1
    && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
  .map((e) => `${e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""


def _codes(rows: Locator) -> list[str]:
    return [rows.nth(i).locator(".nbcache-code").inner_text() for i in range(rows.count())]


@pytest.mark.parametrize(("frontend", "theme"), FRONTS)
def test_browser_and_card_as_a_new_user_meets_them(lab: Lab, frontend: str, theme: str) -> None:
    lab.use(frontend, theme)
    folder = f".nbcache-{uuid.uuid4().hex[:8]}"
    page = lab.run_notebook(_cells(folder))
    browser = page.locator(".nbcache-browser")
    rows = browser.locator(".nbcache-browser-row:visible")
    expect(rows).to_have_count(3)

    # The code column: the memoized call with its arguments, no dash.
    assert "scaled(3, n=2)" in _codes(rows), _codes(rows)
    assert "—" not in _codes(rows)

    # Refresh shows what was stored after the browser was drawn.
    browser.locator(".nbcache-browser-refresh").click()
    expect(rows).to_have_count(4)
    expect(browser.locator(".nbcache-browser-message")).to_contain_text("(+1)")

    # Delete asks in a sentence, and nothing happens until confirmed.
    rows.nth(0).locator("input[type=checkbox]").check()
    browser.locator(".nbcache-browser-delete").click()
    question = browser.locator(".nbcache-browser-confirm")
    expect(question).to_contain_text(
        re.compile(
            r"Delete 1 entry \(.+\) from the store\? The cell or call that made it will "
            r"compute again next time\."
        )
    )
    question.locator(".nbcache-browser-confirm-no").click()
    rows.nth(0).locator("input[type=checkbox]").uncheck()

    # Whole names and no sideways scrolling, from a wide window to a phone's.
    lab.collapse_left()
    for width in (1280, 900, 700, 400):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(400)
        where = f"{frontend} {theme} at {width} px"
        assert browser.evaluate(_CLIPPED) == [], where
        if width <= 500:
            assert browser.evaluate(_SIDEWAYS) == [], where
        assert overflows(browser) == [], where
        warning = lab.outputs(3).filter(has_text="cannot be pickled").locator("pre")
        assert warning.evaluate(_SPLIT_WORDS) == [], where
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(400)

    # Colours: the failed card's chip, its error line and its folded output's title.
    card = page.locator(".nbcache-card")
    expect(card.locator(".nbcache-card-state")).to_have_text("failed")
    for part in (".nbcache-card-state", ".nbcache-card-error", ".jupyter-widget-Collapse-header"):
        ratio = contrast(card.locator(part).first)
        assert ratio >= 4.5, f"{part}: {ratio:.2f}:1 in {frontend} {theme}"
    for part in (".nbcache-name", ".nbcache-code", ".nbcache-num"):
        ratio = contrast(rows.nth(0).locator(part).first)
        assert ratio >= 4.5, f"{part}: {ratio:.2f}:1 in {frontend} {theme}"

    # Saved without widget state, the card says how its task ended.
    lab.save()
    saved = json.loads((lab.server.root / lab.opened[-1]).read_text())
    texts = [
        "".join(output["data"]["text/plain"])
        for output in saved["cells"][5]["outputs"]
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert len(texts) == 1 and texts[0].startswith("nbcache: fit_baseline failed after "), texts
    assert texts[0].endswith("ValueError: the target column has no positive rows"), texts
    (browser_text,) = [
        "".join(output["data"]["text/plain"])
        for output in saved["cells"][7]["outputs"]
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert browser_text.startswith("nbcache: 4 entries, ") and LONG in browser_text


RESUMABLE = """\
%%cache -b -n resumable --checkpoint 0s
import os, time
from nbcache import progress
total = 0
for i in progress(range(80)):
    total += i
    time.sleep(0.1)
    if i == int(os.environ.get("FAIL_AT", "-1")):
        raise ValueError(f"failed at {i}")
"""


def test_a_resumed_card_counts_its_own_rate(lab: Lab) -> None:
    """A background cell that resumed at step 31 of 80 runs at about 10 steps a second
    (one step each 0.1 s): its card says so, not the 31 skipped steps over its few
    seconds; the time left follows from that rate."""
    page = lab.run_notebook(
        [
            "%load_ext nbcache\nimport os\nos.environ['FAIL_AT'] = '30'",
            RESUMABLE,
            "%nbcache wait resumable\ndel os.environ['FAIL_AT']",
            RESUMABLE,
        ]
    )
    card = page.locator(".nbcache-card").nth(1)
    expect(card.locator(".nbcache-card-resumed")).to_contain_text("resumed at step ")
    count = card.locator(".nbcache-card-count")
    expect(count).to_have_text(re.compile(r"^(4\d|5\d) / 80 · "), timeout=15_000)
    shown = count.inner_text()
    rate = float(re.search(r"· ([\d.]+) it/s", shown).group(1))  # type: ignore[union-attr]
    assert 3 <= rate <= 12, shown  # at most 10 it/s, less on a loaded machine
    left = card.locator(".nbcache-card-time").inner_text()
    seconds = float(re.search(r"about ([\d.]+) s left", left).group(1))  # type: ignore[union-attr]
    assert seconds >= 2.0, left  # 20 or more steps of 0.1 s
