"""nbcache in JupyterLab 4, in headless Chromium: what the user sees after a restart, and
ipywidgets' comms working end to end (the task card for background cells relies on them).

See conftest.py for the server, the browser and the ``lab`` helper.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from .conftest import Lab

pytestmark = pytest.mark.browser


def test_cache_restored_after_kernel_restart(lab: Lab) -> None:
    token = uuid.uuid4().hex[:8]  # a cell no earlier run has stored
    cells = [
        "%load_ext nbcache\nimport os\nprint('kernel', os.getpid())",
        f"%%cache\nprint('computing {token}')\nanswer = 6 * 7\nanswer",
        "print('answer is', answer)",
    ]
    lab.run_notebook(cells)
    first_kernel = lab.output_texts(0)
    first = lab.output_texts(1)
    assert f"computing {token}" in first, lab.describe()
    assert "42" in first, lab.describe()
    # The status widget: a chip saying nbcache, then the line's words.
    assert not any(re.match(r"nbcache\s+restored", text) for text in first), lab.describe()
    assert any(re.match(r"nbcache\s+computed answer\b", text) for text in first), lab.describe()
    # The kernel stored it in the server's tmp store, not in the repo's or the user's.
    assert any(p.is_file() for p in lab.server.store.rglob("*")), lab.server.store
    lab.screenshot("first-run")

    lab.restart_kernel()
    lab.run_all()

    assert lab.output_texts(0) != first_kernel, "the kernel did not restart:\n" + lab.describe()
    second = lab.outputs(1)
    expect(second.filter(has_text=re.compile(r"nbcache\s+restored answer"))).to_have_count(1)
    expect(second.filter(has_text=f"computing {token}")).to_have_count(1)
    expect(second.filter(has_text=re.compile(r"^\s*42\s*$"))).to_have_count(1)
    expect(lab.outputs(2)).to_have_text(["answer is 42"])


WIDGETS = """\
import ipywidgets as w

progress = w.IntProgress(value=3, min=0, max=10, description='work')
button = w.Button(description='Bump')
label = w.Label(value='clicks: 0')
for widget, name in [(progress, 'progress'), (button, 'button'), (label, 'label')]:
    widget.add_class(f'nbtest-{name}')
clicks = []

def bump(_):
    clicks.append(1)
    progress.value += 1
    label.value = f'clicks: {len(clicks)}, progress: {progress.value}'

button.on_click(bump)
w.HBox([progress, button, label])
"""


def test_widget_button_runs_python_callback(lab: Lab) -> None:
    page = lab.run_notebook([WIDGETS])
    progress = page.locator(".widget-hprogress.nbtest-progress")
    button = page.locator(".widget-button.nbtest-button")
    label = page.locator(".nbtest-label")
    expect(progress).to_be_visible()
    expect(button).to_have_text("Bump")
    expect(label).to_have_text("clicks: 0")
    lab.screenshot("rendered")

    button.click()
    expect(label).to_have_text("clicks: 1, progress: 4")
    button.click()
    expect(label).to_have_text("clicks: 2, progress: 5")
    # The bar follows the model: 5 of 0..10 is half its width.
    expect(progress.locator(".progress-bar")).to_have_attribute("style", re.compile(r"50%"))
