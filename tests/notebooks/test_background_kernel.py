"""Background cells in a real kernel: the kernel stays free, the card tells the story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import nbrun

BACKGROUND = (
    "%%cache -b -n bg\nstart = time.time()\nfor i in nbcache.progress(range(20)):\n"
    "    time.sleep(0.1)\nprint('bg done')\nvalue = 42"
)
FAILING = "%%cache -b -n broken\ntime.sleep(0.2)\nraise ValueError('late failure')"
CELLS = [
    "%load_ext nbcache\nimport time, nbcache",
    BACKGROUND,
    "t_plain = time.time()\nprint('plain ran')",
    "%nbcache wait bg\nprint(value, t_plain < start + 1.5)",
    BACKGROUND,
    FAILING,
    "%nbcache wait broken\n%nbcache tasks",
]


def _models(nb: Any) -> dict[str, Any]:
    key = "application/vnd.jupyter.widget-state+json"
    return dict(nb.metadata.get("widgets", {}).get(key, {}).get("state", {}))


def _card_of(nb: Any, index: int) -> dict[str, Any]:
    """The widget states of the card shown by cell ``index``, by model name."""
    (view,) = [o for o in nbrun.outputs(nb, index) if o.output_type == "display_data"]
    models = _models(nb)
    found: dict[str, Any] = {}
    pending = [view.data["application/vnd.jupyter.widget-view+json"]["model_id"]]
    while pending:
        model = models[pending.pop()]
        found.setdefault(model["model_name"], []).append(model["state"])
        for child in model["state"].get("children", []):
            pending.append(child.removeprefix("IPY_MODEL_"))
    return found


def _html(card: dict[str, Any]) -> str:
    """The card's text: its HTML widgets' values, without the stylesheet's."""
    values = [html["value"] for html in card["HTMLModel"]]
    return " ".join(v for v in values if not v.startswith("<style>"))


def test_background_cell_in_a_real_kernel(tmp_path: Path) -> None:
    """The cell returns at once, a plain cell runs meanwhile, wait brings the value, the
    card ends done with its output, the rerun is a hit, and a failure shows its error."""
    nb = nbrun.run(CELLS, cwd=tmp_path, env=nbrun.kernel_env(tmp_path, tmp_path / "store"))
    assert nbrun.text_of(nb, 2) == "plain ran\n"
    assert nbrun.text_of(nb, 3) == "42 True\n"  # the plain cell ran while the body slept
    # What a viewer without the widgets' state shows: the text twin, never a repr, and
    # how the task ended, not that it runs (the display was updated when it ended).
    (view,) = [o for o in nbrun.outputs(nb, 1) if o.output_type == "display_data"]
    assert view.data["text/plain"].startswith("nbcache: bg done after ")
    assert "stored in store" in view.data["text/plain"]
    card = _card_of(nb, 1)
    text = _html(card)
    assert 'data-state="done"' in text and ">bg<" in text and "20 / 20" in text
    assert "width: 100.0%" in text and "computed <b>value, start, i</b>" in text
    assert "ButtonModel" not in card  # Cancel is gone once the task ended
    (pane,) = card["OutputModel"]
    assert "".join(o.get("text", "") for o in pane["outputs"]) == "bg done\n"
    assert nbrun.text_of(nb, 4) == "bg done\n"  # the rerun restores and replays at once
    assert nbrun.status_lines(nb, 4)[0].startswith("nbcache: restored")
    (status,) = [o for o in nbrun.outputs(nb, 4) if "nbcache" in o.get("metadata", {})]
    assert "application/vnd.jupyter.widget-view+json" in status.data  # a widget in a kernel
    failed = _card_of(nb, 5)
    shown = _html(failed)
    assert 'data-state="failed"' in shown and "ValueError: late failure" in shown
    assert "failed" in nbrun.text_of(nb, 6)
    assert not nbrun.errors(nb)
