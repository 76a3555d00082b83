"""nbcache's JupyterLab and Notebook 7 extension: the cache's state on every code cell.

Read from the DOM, as a user's eye would: each cell element carries
``data-nbcache-state`` (``restored``, ``ran``, ``memory``, ``always``, ``uncached``,
``running`` or ``stale``), its prompt says the state in a word and why on hover.
The extension is this checkout's build (``LABEXTENSION`` in conftest.py).

The README's picture of every state is made here from the tutorial notebook: saved in
``artifacts/``, and with ``NBCACHE_README_IMAGES=1`` also as
``docs/images/cell-states-<theme>.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from ..notebooks import nbrun
from .conftest import ARTIFACTS, Lab, overflows

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "notebooks" / "quickstart.ipynb"
IMAGES = REPO / "docs" / "images"
STATE_TIMEOUT = 60_000  # ms until a state shows

# What the label beside the prompt looks like: its colour and the background behind it.
_LABEL_COLOURS = """(prompt) => {
  const rgb = (c) => {
    const n = (c.match(/[\\d.]+/g) || []).map(Number);
    return c.startsWith("color(srgb") ? n.map((v, i) => (i < 3 ? v * 255 : v)) : n;
  };
  let bg = null;
  for (let p = prompt; p; p = p.parentElement) {
    const c = rgb(getComputedStyle(p).backgroundColor);
    if (c.length >= 3 && (c.length === 3 || c[3] > 0.9)) { bg = c; break; }
  }
  const after = getComputedStyle(prompt, "::after");
  return { fg: rgb(after.color), bg: bg || [255, 255, 255], content: after.content };
}"""


def _luminance(rgb: list[float]) -> float:
    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def label_contrast(lab: Lab, index: int) -> float:
    """WCAG contrast of cell ``index``'s state label against what is behind it."""
    found: dict[str, Any] = lab.cell(index).locator(".jp-InputPrompt").evaluate(_LABEL_COLOURS)
    fg, bg = found["fg"], found["bg"]
    alpha = fg[3] if len(fg) > 3 else 1.0
    fg = [alpha * f + (1 - alpha) * b for f, b in zip(fg[:3], bg[:3], strict=True)]
    hi, lo = sorted([_luminance(fg), _luminance(bg)], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def states(lab: Lab) -> list[str | None]:
    """Every cell's ``data-nbcache-state`` (None: no state), top to bottom."""
    found: list[str | None] = lab.page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')]
          .filter((c) => c.offsetParent !== null)
          .map((c) => c.dataset.nbcacheState || null)"""
    )
    return found


def expect_state(lab: Lab, index: int, state: str) -> None:
    expect(lab.cell(index)).to_have_attribute("data-nbcache-state", state, timeout=STATE_TIMEOUT)


def hover(lab: Lab, index: int) -> str:
    return lab.cell(index).locator(".jp-InputPrompt").get_attribute("title") or ""


def set_source(lab: Lab, index: int, source: str) -> None:
    """Change cell ``index``'s text as typing would (through its shared model)."""
    lab.page.evaluate(
        """([index, source]) => {
          const panel = window.jupyterapp.shell.currentWidget;
          panel.content.widgets[index].model.sharedModel.setSource(source);
        }""",
        [index, source],
    )


# -- the record in cell metadata, before any kernel -----------------------------------

RECORDED = [
    ("restored", {"outcome": "restored", "why": "its key matches", "seconds": 12.0}),
    ("ran", {"outcome": "ran", "why": "no earlier entry", "seconds": 3.2}),
    ("memory", {"outcome": "kept in memory", "why": "it ran in less time", "seconds": 0.01}),
    ("always", {"outcome": "always runs", "why": "it sets `json.x`", "seconds": 0.0}),
    ("uncached", {"outcome": "uncached", "why": "it calls IPython"}),
    (None, {"outcome": "failed", "why": "ValueError"}),
    (None, None),
]


@pytest.mark.parametrize(("frontend", "theme"), [("lab", "light"), ("notebook", "dark")])
def test_the_recorded_states_show_when_a_notebook_opens(
    lab: Lab, frontend: str, theme: str
) -> None:
    """``nbcache run``'s record in each cell's metadata shows as it opens, nbcache not even
    loaded: a state each, why on hover, readable, and fitting a 400 px window."""
    lab.use(frontend, theme)
    nb = nbrun.build([f"value_{i} = {i}" for i in range(len(RECORDED))])
    for cell, (_, record) in zip(nb.cells, RECORDED, strict=True):
        if record is not None:
            cell.metadata["nbcache"] = record
    path = f"recorded-{frontend}-{theme}.ipynb"
    nbformat.write(nb, lab.server.root / path)
    lab.open(path)
    for i, (state, _) in enumerate(RECORDED):
        if state is not None:
            expect_state(lab, i, state)
    assert states(lab) == [state for state, _ in RECORDED]
    assert hover(lab, 0) == "restored, saved 12 s: its key matches"
    assert hover(lab, 1) == "ran in 3.2 s and stored: no earlier entry"
    assert hover(lab, 4) == "ran uncached: it calls IPython"
    assert hover(lab, 6) == ""
    for i in range(5):
        assert label_contrast(lab, i) >= 4.5, (i, theme)
    lab.page.set_viewport_size({"width": 400, "height": 900})
    lab.collapse_left()
    for i in range(len(RECORDED)):
        assert overflows(lab.cell(i).locator(".jp-InputPrompt")) == []
    # Nothing from nbcache while the kernel never loaded it.
    assert lab.page.locator(".nbcache-run-stale-item:visible").count() == 0


# -- live: the kernel's states, background progress, stale after an edit -----------

LIVE = [
    "%load_ext nbcache",  # 0
    "n = 3\nimport json",  # 1: plain
    "%%cache -n double\nx = n * 2",  # 2: ran, then restored
    "%%cache -n plus\ny = x + 1",  # 3: reads what 2 made
    "%%cache -n other\nz = 5",  # 4: reads nothing of 1
    "%%cache\nimport threading\nlock = threading.Lock()",  # 5: will not pickle: memory
    "%%cache\njson.nbcache_test = True",  # 6: patches a module: always
    "%%cache\n%env NBCACHE_TEST_FLAG=1",  # 7: calls IPython: uncached
    "%%cache -b -n slow\nimport time, nbcache\n"
    "for i in nbcache.progress(range(40)):\n    time.sleep(0.1)\nslow = 1",  # 8: running
]


def test_states_follow_the_kernel_and_edits_mark_stale_in_notebook_7(lab: Lab) -> None:
    """Every state a kernel says, a restart, an edit that makes two cells stale and one
    that does not, and the toolbar's action that runs them (JupyterLab: the tutorial's
    test below)."""
    frontend, theme = "notebook", "light"
    lab.use(frontend, theme)
    lab.run_notebook(LIVE, name=f"live-{frontend}-{theme}.ipynb")
    expect_state(lab, 8, "running")
    assert "running in the background" in hover(lab, 8)
    for index, state in [(2, "ran"), (3, "ran"), (4, "ran"), (5, "memory"), (6, "always")]:
        expect_state(lab, index, state)
    expect_state(lab, 7, "uncached")
    expect_state(lab, 8, "ran")
    assert states(lab)[:2] == [None, None]
    assert "no earlier entry" in hover(lab, 2)

    # After a restart the kept cells restore; the state is in the notebook's metadata.
    lab.restart_kernel()
    lab.run_all()
    for index in (2, 3, 4, 8):
        expect_state(lab, index, "restored")
    expect_state(lab, 5, "memory")
    record = lab.page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets[2]
              .model.getMetadata('nbcache')"""
    )
    assert record["outcome"] == "restored" and "seconds" in record

    # An edit marks what would run again, and only that, at once.
    set_source(lab, 1, "n = 4\nimport json")
    for index in (1, 2, 3):
        expect_state(lab, index, "stale")
    assert "it would run again" in hover(lab, 3)
    for index in (4, 8):
        expect_state(lab, index, "restored")
    button = lab.page.locator(".nbcache-run-stale:visible")
    expect(button).to_have_text("Run 3 stale")

    # One action runs them, in order.
    button.click()
    for index in (2, 3):
        expect_state(lab, index, "ran")
    expect(lab.cell(1)).not_to_have_attribute("data-nbcache-state", "stale")
    expect(button).to_have_count(0)


def all_states(lab: Lab) -> list[str | None]:
    """Every cell's state, whether or not the notebook has drawn it yet (a long notebook
    draws only what is in view)."""
    found: list[str | None] = lab.page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
              .map((c) => c.node.dataset.nbcacheState || null)"""
    )
    return found


def run_cell(lab: Lab, index: int) -> None:
    lab.page.evaluate(
        """async (index) => {
          const app = window.jupyterapp;
          app.shell.currentWidget.content.activeCellIndex = index;
          await app.commands.execute('notebook:run-cell');
        }""",
        index,
    )


LARGE = 500  # cells


def test_a_large_notebook_shows_its_states_and_marks_stale_quickly(lab: Lab) -> None:
    """500 cells, half of them cached with a record of their last run: every state shows
    as the notebook opens, and a burst of typing at the top marks the cached cells that
    read it stale, and only them, from one plan: the editor asks the kernel once per
    pause in typing, not once per keystroke."""
    cells = ["%load_ext nbcache", "base = 1"]
    for i in range(2, LARGE):
        cells.append(f"%%cache\nv{i} = base + {i}" if i % 2 else f"u{i} = {i}")
    nb = nbrun.build(cells)
    for i, cell in enumerate(nb.cells):
        if i >= 2 and i % 2:
            cell.metadata["nbcache"] = {"outcome": "ran", "why": "no entry", "seconds": 0.1}
            cell.execution_count = i
    nbformat.write(nb, lab.server.root / "large.ipynb")
    plans = plan_requests(lab)
    lab.open("large.ipynb")
    readers = {i for i in range(2, LARGE) if i % 2}
    assert {i for i, state in enumerate(all_states(lab)) if state == "ran"} == readers

    run_cell(lab, 0)  # nbcache loads in this kernel
    run_cell(lab, 1)
    lab.page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets[1].model.executionCount"
    )
    typing = [f"base = {'2' * n}" for n in range(1, 11)]
    lab.page.evaluate(
        """(sources) => {
          const cell = window.jupyterapp.shell.currentWidget.content.widgets[1];
          for (const source of sources) cell.model.sharedModel.setSource(source);
        }""",
        typing,
    )
    lab.page.wait_for_function(
        f"""() => window.jupyterapp.shell.currentWidget.content.widgets
              .filter((c) => c.node.dataset.nbcacheState === 'stale').length
              === {len(readers) + 1}""",
        timeout=STATE_TIMEOUT,
    )
    assert set(stale_cells(lab)) == readers | {1}
    # Only the plans that carry the typed source count: the runs above ask for plans of
    # their own, which may go out before or after this point depending on the load.
    typed = [plan for plan in plans if '"base = 2' in plan]
    assert len(typed) == 1, "ten keystrokes, one pause: one plan asked of the kernel"
    assert '"base = 2222222222"' in typed[0]


def plan_requests(lab: Lab) -> list[str]:
    """The plan requests the page sends its kernels from now on, as they go out over
    the websocket (whatever its framing, the comm's JSON is in the frame)."""
    sent: list[str] = []

    def frame(payload: str | bytes) -> None:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if '"type":"plan"' in text.replace(" ", ""):
            sent.append(text)

    lab.page.on("websocket", lambda ws: ws.on("framesent", frame))
    return sent


# -- the tutorial in JupyterLab, and the README's picture -----------------------------

# Cells after the tutorial's own, for the states it shows none of: one kept in memory,
# one that always runs, one uncached, and more resamples than its bootstrap takes, in the
# background, run again (-f) each time so that the picture catches it running.
EXTRA = [
    "%%cache\nimport threading\nlock = threading.Lock()  # will not pickle: kept in memory",
    "%%cache\npd.options.display.max_rows = 20  # changes pandas itself: always runs",
    "%%cache\n%env OMP_NUM_THREADS=1",
    "%%cache -b -f -n more_resamples\nrng_more = np.random.default_rng(11)\nmore = [\n"
    "    rng_more.choice(per_product, size=per_product.size).mean()\n"
    "    for _ in nbcache.progress(range(100_000))\n]",
]
# The tutorial's cells the picture leaves out: its memoized functions and listings.
LEFT_OUT = ("from nbcache import memoize", "means = ", "reorder_point.", "%nbcache ")


def picture(lab: Lab, name: str) -> None:
    """The whole notebook, outputs hidden, from its top to its last cell's end, as
    ``name``; with ``NBCACHE_README_IMAGES=1`` also in docs/images/."""
    lab.page.evaluate("() => window.jupyterapp.commands.execute('notebook:hide-all-cell-outputs')")
    outer = """const node = window.jupyterapp.shell.currentWidget.content.node;
          const outer = node.querySelector('.jp-WindowedPanel-outer') || node;"""
    height = lab.page.evaluate(
        f"() => {{ {outer} outer.scrollTop = 0; return outer.scrollHeight; }}"
    )
    lab.page.set_viewport_size({"width": 900, "height": int(height) + 200})
    box = lab.page.evaluate(
        f"""() => {{
          {outer}
          outer.scrollTop = 0;
          const cells = window.jupyterapp.shell.currentWidget.content.widgets;
          const top = node.getBoundingClientRect();
          const end = cells[cells.length - 1].node.getBoundingClientRect();
          return {{x: top.x, y: top.y, width: top.width, height: end.bottom - top.y + 12}};
        }}"""
    )
    lab.page.screenshot(path=ARTIFACTS / name, clip=box)
    if os.environ.get("NBCACHE_README_IMAGES") == "1":
        shutil.copyfile(ARTIFACTS / name, IMAGES / name)


def test_every_state_on_the_tutorial_in_jupyterlab(lab: Lab) -> None:
    """The tutorial's code in JupyterLab with the cells above after it, run, restarted
    and run again; an input edited marks what reads it stale, the cell it feeds run again,
    and the background cell started again: every state shows at once, in the README's
    picture, light and dark. Then the toolbar's action runs what is still stale."""
    lab.use("lab", "light")
    nb = nbformat.read(TUTORIAL, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and not c.source.startswith(LEFT_OUT)]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in EXTRA]
    folder = lab.server.root / "tutorial"
    folder.mkdir()
    nbformat.write(nb, folder / "quickstart.ipynb")
    lab.open("tutorial/quickstart.ipynb")
    lab.collapse_left()
    lab.page.set_viewport_size({"width": 900, "height": 1600})
    lab.run_all(timeout=180_000)
    lab.restart_kernel()
    lab.run_all(timeout=180_000)
    first = {c.source.split("\n")[0]: i for i, c in enumerate(nb.cells)}
    simulation = [i for i, c in enumerate(nb.cells) if c.source.startswith("%%cache -n simulation")]
    cover, bootstrap = first["cover_days = 10"], first["%%cache -b -n bootstrap"]
    more = len(nb.cells) - 1
    for index in (*simulation, bootstrap):
        expect_state(lab, index, "restored")
    assert "saved" in hover(lab, simulation[0]) and "its key matches" in hover(lab, simulation[0])
    states_after = ["memory", "always", "uncached", "ran"]
    for index, state in zip(range(more - 3, more + 1), states_after, strict=True):
        expect_state(lab, index, state)
    lab.page.evaluate("() => window.jupyterapp.commands.execute('notebook:hide-all-cell-outputs')")

    set_source(lab, cover, "cover_days = 12")
    for index in (cover, simulation[1], bootstrap, more):
        expect_state(lab, index, "stale")
    assert simulation[0] not in stale_cells(lab)  # it reads the first cover_days, unchanged
    run_cell(lab, cover)
    run_cell(lab, simulation[1])
    expect_state(lab, simulation[1], "ran")
    expect_state(lab, bootstrap, "stale")  # it reads what the simulation made anew
    run_cell(lab, more)
    expect(lab.cell(more).locator(".jp-InputPrompt")).to_have_attribute(
        "title", re.compile(r"running in the background: [1-9]"), timeout=STATE_TIMEOUT
    )
    assert set(STATES) <= set(all_states(lab))
    for i in range(len(nb.cells)):
        if all_states(lab)[i] is not None:
            assert label_contrast(lab, i) >= 4.5, i
    picture(lab, "cell-states-light.png")
    lab.change_theme("dark")
    expect_state(lab, more, "running")
    for i in (simulation[0], bootstrap, more):
        assert label_contrast(lab, i) >= 4.5, i
    picture(lab, "cell-states-dark.png")

    button = lab.page.locator(".nbcache-run-stale:visible")
    expect(button).to_have_text(f"Run {len(stale_cells(lab))} stale")
    button.click()
    expect_state(lab, bootstrap, "ran")
    expect(button).to_have_count(0)


STATES = ("restored", "ran", "memory", "always", "uncached", "running", "stale")


def stale_cells(lab: Lab) -> list[int]:
    return [i for i, state in enumerate(all_states(lab)) if state == "stale"]
