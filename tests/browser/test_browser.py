"""The cache browser in JupyterLab 4 and Notebook 7, light and dark: what it lists agrees
with the status lines, its heads sort, its filter filters, Delete deletes."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Locator, expect

from nbcache.store import LocalStore

from .conftest import ARTIFACTS, Lab, contrast, overflows

pytestmark = pytest.mark.browser

FRONTS = [("lab", "light"), ("lab", "dark"), ("notebook", "light"), ("notebook", "dark")]
SIZE = re.compile(r"\d+(?:\.\d)? [KMG]?B")


def _cells(folder: str) -> list[str]:
    prices = "%%cache -n daily_prices\nprices = [round(1.001**d, 4) for d in range(20_000)]"
    return [
        f"%load_ext nbcache\n%nbcache dir {folder}",
        prices,
        "%%cache -n weights\nweights = [0.25] * 4",
        "%%cache -n customer_segments\nsegments = {s: list(range(3_000)) for s in 'abc'}",
        prices,  # a hit
        "%nbcache",
    ]


def _names(rows: Locator) -> list[str]:
    cells = [rows.nth(i).locator(".nbcache-cols > span") for i in range(rows.count())]
    return [cell.nth(0).inner_text() for cell in cells]


def _status(lab: Lab, index: int) -> str:
    (line,) = [t for t in lab.output_texts(index) if "computed" in t or "restored" in t]
    return line


@pytest.mark.parametrize(("frontend", "theme"), FRONTS)
def test_browser_sorts_filters_and_deletes(lab: Lab, frontend: str, theme: str) -> None:
    """Sizes agree with the status lines; a head sorts both ways; the filter narrows the
    rows; Delete asks, then removes the entry from the store; an emptied store shows a
    friendly message; nothing overflows; the colours follow the theme."""
    lab.use(frontend, theme)
    folder = f".nbcache-{uuid.uuid4().hex[:8]}"
    page = lab.run_notebook(_cells(folder))
    browser = page.locator(".nbcache-browser")
    rows = browser.locator(".nbcache-browser-row:visible")
    expect(rows).to_have_count(3)
    expect(browser.locator(".nbcache-browser-totals")).to_have_text(
        re.compile(
            rf"^3 entries, {SIZE.pattern} of a 10\.0 GB limit, in {folder}; they have "
            r"saved .+ of computing so far\.$"
        )
    )

    # The same size on the miss, on the hit and in the browser.
    computed = SIZE.search(_status(lab, 1))
    restored = SIZE.search(_status(lab, 4))
    assert computed and restored and computed.group() == restored.group(), lab.describe()
    (prices,) = [i for i, name in enumerate(_names(rows)) if name == "daily_prices"]
    size_cell = rows.nth(prices).locator(".nbcache-cols > span").nth(2)
    assert size_cell.inner_text() == computed.group()

    heads = browser.locator(".nbcache-th")
    heads.filter(has_text="size").click()
    expect(heads.filter(has_text="size")).to_have_text("size ▼")
    expect(rows.nth(0)).to_contain_text("daily_prices")
    heads.filter(has_text="size").click()
    expect(heads.filter(has_text="size")).to_have_text("size ▲")
    expect(rows.nth(0)).to_contain_text("weights")
    heads.filter(has_text="name").click()
    expect(heads.filter(has_text="name")).to_have_text("name ▲")
    expect(rows.nth(0)).to_contain_text("customer_segments")
    expect(rows.nth(2)).to_contain_text("weights")

    browser.locator(".nbcache-browser-filter input").fill("segments")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("customer_segments")
    browser.locator(".nbcache-browser-filter input").fill("")
    expect(rows).to_have_count(3)

    assert overflows(browser) == []
    status = lab.cell(4).locator(".nbcache-status")
    expect(status).to_contain_text("restored prices (")
    assert overflows(status) == []
    assert contrast(status.locator(".nbcache-status-text")) >= 4.5
    if theme == "dark":
        assert contrast(rows.nth(0).locator(".nbcache-cols > span").nth(0)) >= 4.5
        assert contrast(heads.nth(0)) >= 4.5
    browser.screenshot(path=ARTIFACTS / f"{lab.prefix}-browser.png")
    lab.collapse_left()
    for width in (800, 480):  # the table scrolls sideways; nothing else runs over
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)
        assert overflows(browser) == [], f"a {width} px window"
    browser.screenshot(path=ARTIFACTS / f"{lab.prefix}-browser-narrow.png")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(300)  # Notebook 7 lays the page out again after a resize

    store = LocalStore(lab.server.root / folder)
    before = {e.key for e in store.entries()}
    (weights,) = [i for i, name in enumerate(_names(rows)) if name == "weights"]
    box = rows.nth(weights).locator("input[type=checkbox]")
    box.scroll_into_view_if_needed()  # the narrow window left the table scrolled sideways
    box.check()
    expect(browser.locator(".nbcache-browser-selected")).to_contain_text("1 entry selected")
    browser.locator(".nbcache-browser-delete").click()
    confirm = browser.locator(".nbcache-browser-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Delete 1 entry")
    assert {e.key for e in store.entries()} == before  # asked, nothing removed yet
    confirm.locator(".nbcache-browser-confirm-yes").click()
    expect(rows).to_have_count(2)
    expect(browser.locator(".nbcache-browser-message")).to_have_text(
        re.compile(r"^Deleted 1 entry \(.+\)\.$")
    )
    deadline = time.monotonic() + 10
    while len({e.key for e in store.entries()}) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len({e.key for e in store.entries()}) == 2
    assert "weights" not in _names(rows)

    browser.locator(".nbcache-row-head input[type=checkbox]").check()
    browser.locator(".nbcache-browser-delete").click()
    confirm.locator(".nbcache-browser-confirm-yes").click()
    expect(rows).to_have_count(0)
    expect(browser.locator(".nbcache-browser-empty")).to_contain_text("No cached results yet")
    expect(browser.locator(".nbcache-browser-totals")).to_have_text(f"The store {folder} is empty.")
    assert overflows(browser) == []
    lab.screenshot("emptied")


TEN_THOUSAND = """\
import time
from nbcache.ui.widgets import browse
from nbcache.cache.ledger import EntryRecord

class BigStore:
    store = None
    def __init__(self):
        now = time.time()
        self.items = [
            EntryRecord(f"{n:032x}", 1_000 * n, now - n * 60, now - n, n % 9, 2.5,
                        label=f"feature_{n:05d}", first_line=f"features = build({n})")
            for n in range(10_000)
        ]
    @property
    def ledger(self):
        return self  # listings are the ledger's: it stands for both
    def records(self):
        return self.items

started = time.perf_counter()
view = browse(BigStore(), widgets=True)
print(f"built in {time.perf_counter() - started:.2f} s")
"""


def test_browser_pages_ten_thousand_entries(lab: Lab) -> None:
    """A store of 10,000 entries shows one page of 25 rows, pages and sorts at once."""
    page = lab.run_notebook(["%load_ext nbcache", TEN_THOUSAND])
    browser = page.locator(".nbcache-browser")
    rows = browser.locator(".nbcache-browser-row:visible")
    expect(rows).to_have_count(25)
    expect(browser.locator(".nbcache-browser-where")).to_have_text("1–25 of 10,000")
    built = float(re.search(r"built in ([\d.]+) s", " ".join(lab.output_texts(1))).group(1))  # type: ignore[union-attr]
    assert built < 3.0
    started = time.monotonic()
    browser.locator(".nbcache-browser-next").click()
    expect(browser.locator(".nbcache-browser-where")).to_have_text("26–50 of 10,000")
    browser.locator(".nbcache-th").filter(has_text="size").click()
    expect(rows.nth(0)).to_contain_text("feature_09999")
    assert time.monotonic() - started < 5.0
    assert overflows(browser) == []
