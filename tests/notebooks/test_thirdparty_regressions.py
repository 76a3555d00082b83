"""Breaks found by running public notebooks nobody here wrote through ``nbcache run``,
each reproduced on a small notebook of its own (the notebooks themselves are not kept
here: see docs/decisions.md, "Third-party notebooks beyond the corpus")."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from queue import Empty
from types import SimpleNamespace
from typing import Any

import pytest

from nbcache.notebooks import cellids

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class LostWakeup:
    """A kernel channel whose first wait misses the wake-up for a message already there,
    as an asyncio ZeroMQ socket can: that wait ends only at its timeout (with none, never);
    a wait begun after it finds the message."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self.timeouts: list[float | None] = []

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        self.timeouts.append(timeout)
        if len(self.timeouts) == 1:
            if timeout is None:
                raise AssertionError("a wait with no timeout whose wake-up is missed never ends")
            raise Empty  # it waited out its timeout
        return self.message


def _client_channels() -> SimpleNamespace:
    """The channels of the kernel client that nbcache's nbclient client starts (the one
    ``nbcache run`` and papermill's engine use), over a kernel that is not there."""
    kc = SimpleNamespace(
        shell_channel=LostWakeup({"msg_type": "execute_reply"}),
        iopub_channel=LostWakeup({"msg_type": "status"}),
        allow_stdin=False,
        session=None,
    )

    class Base:
        async def async_start_new_kernel_client(self) -> Any:
            return kc

        async def async_execute_cell(self, *a: Any, **kw: Any) -> Any:
            return None

    client = cellids.with_cell_ids(Base)()
    return asyncio.run(client.async_start_new_kernel_client())  # type: ignore[no-any-return]


def test_a_missed_wake_up_on_a_channel_costs_a_slice_not_the_whole_run() -> None:
    """``nbcache run`` of ipywidgets' "Using Interact" waited for ever for the reply of a
    cell showing ``interact(...)``: the reply had come, the wait on the shell socket
    missed it, and with no --timeout nothing ended the wait."""
    kc = _client_channels()
    assert asyncio.run(kc.shell_channel.get_msg(timeout=None)) == {"msg_type": "execute_reply"}
    assert asyncio.run(kc.iopub_channel.get_msg()) == {"msg_type": "status"}
    for channel in (kc.shell_channel, kc.iopub_channel):
        assert len(channel.timeouts) == 2
        assert all(t is not None and t <= cellids.WAIT_SLICE for t in channel.timeouts)


class Silent:
    """A channel with nothing to read: each wait ends empty at once."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        self.timeouts.append(timeout)
        raise Empty


def test_a_sliced_wait_still_ends_empty_when_its_timeout_passes() -> None:
    kc = SimpleNamespace(shell_channel=Silent(), iopub_channel=Silent())
    cellids.bounded_waits(kc)
    with pytest.raises(Empty):
        asyncio.run(kc.shell_channel.get_msg(timeout=0.0))
    assert kc.shell_channel.timeouts == [0.0]


INTERACT = [
    "from ipywidgets import interact",
    "def f(x):\n    return x",
    "interact(f, x=10);",
    "interact(f, x=True);",
    "interact(f, x='Hi there!');",
    "print('end')",
]


def _run_twice(cells: list[str], folder: Path) -> list[Any]:
    """``nbcache run`` of a notebook of ``cells``, twice on one store, with no --timeout:
    each run's executed notebook and summary."""
    import nbformat

    from nbcache.notebooks import runner

    nb = nbformat.v4.new_notebook()
    spec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kernelspec"] = spec
    nb.cells = [nbformat.v4.new_code_cell(s, id=f"c{i}") for i, s in enumerate(cells)]
    path = folder / "notebook.ipynb"
    nbformat.write(nb, path)
    out = []
    for run in ("first", "second"):
        done, summary = runner.run_notebook(
            path, out=folder / f"{run}.ipynb", store=os.fspath(folder / "store")
        )
        assert summary.error is None, summary.line()
        out.append((done, summary))
    return out


def _shown(nb: Any) -> list[list[str]]:
    """Each cell's outputs by type and MIME types (a widget's model id differs per kernel)."""
    return [
        [json.dumps([o["output_type"], sorted(o.get("data", {}))]) for o in c.outputs]
        for c in nb.cells
    ]


@pytest.mark.timeout(300)
def test_a_notebook_of_interact_cells_runs_to_its_end_twice(tmp_path: Path) -> None:
    runs = _run_twice(INTERACT, tmp_path)
    for done, _ in runs:
        assert "".join(done.cells[-1].outputs[0]["text"]) == "end\n"
    assert _shown(runs[0][0]) == _shown(runs[1][0])


@pytest.mark.timeout(300)
def test_a_cell_whose_output_a_widget_captured_runs_again_rather_than_restore_it(
    tmp_path: Path,
) -> None:
    """ipywidgets' "Factoring": ``interact(factorit, n=(2, 40));`` restored showed the
    widget's view (of a model no longer in any kernel) and, beside it, what the widget's
    Output had captured when it was made."""
    cells = [
        "from ipywidgets import interact\nfrom IPython.display import display",
        "def twice(n):\n    display(n * 2)\n    return n",
        "%%cache\ninteract(twice, n=(2, 40));",
        "%%cache\nvalue = 7\nvalue",
    ]
    (first, _), (second, summary) = _run_twice(cells, tmp_path)
    assert _shown(first) == _shown(second)
    assert _shown(second)[2] == [json.dumps(["display_data", [WIDGET_VIEW, "text/plain"]])]
    outcomes = [c.outcome for c in summary.cells]
    assert outcomes[2] != "restored" and outcomes[3] == "restored", summary.verbose_lines()


@pytest.mark.timeout(300)
def test_a_clear_inside_a_widgets_output_leaves_what_the_cell_showed(tmp_path: Path) -> None:
    """``clear_output`` inside an Output clears that widget: what the cell printed
    before it still shows, in every run."""
    cells = [
        "%%cache\nimport ipywidgets as w\nfrom IPython.display import clear_output\n"
        "print('kept')\nwith w.Output():\n    clear_output()\nn = 1",
    ]
    (first, _), (second, _) = _run_twice(cells, tmp_path)
    for done in (first, second):
        assert [o.get("text") for o in done.cells[0].outputs] == ["kept\n"]
