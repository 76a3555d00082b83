"""A cell that resumes at a checkpoint shows one status line: the line that says where it
resumed is replaced by the cell's last one, not followed by it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.default import default_cache
from tests.shells import close_shell, new_shell

LOOP = (
    "%%cache -n loop --checkpoint 0s\nimport os, nbcache\nacc = []\n"
    "for i in nbcache.progress(range(10)):\n    acc.append(i)\n"
    "    if i == 6 and os.path.exists('stop-at-6'):\n        raise ValueError(i)\n"
)


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    shell = new_shell(tmp_path)
    yield shell
    close_shell(shell)


def _recorded(shell: InteractiveShell) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    original = shell.display_pub.publish

    def publish(data: Any, metadata: Any = None, **kwargs: Any) -> None:
        calls.append({"text": data.get("text/plain", ""), **kwargs})
        original(data, metadata, **kwargs)

    shell.display_pub.publish = publish  # type: ignore[method-assign, assignment]
    return calls


def _statuses(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in calls if str(c["text"]).startswith("nbcache: ")]


def test_a_resumed_cell_shows_one_status_line(ip: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "stop-at-6").touch()
    ip.run_cell(LOOP)  # type: ignore[no-untyped-call]
    (tmp_path / "stop-at-6").unlink()
    deadline = time.monotonic() + 10
    while not any(r.label.startswith("partial: ") for r in default_cache().ledger.records()):
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.01)  # the checkpoint is written in the background
    calls = _recorded(ip)
    ip.run_cell(LOOP)  # type: ignore[no-untyped-call]
    first, last = _statuses(calls)
    assert first["text"].startswith("nbcache: resumed at step ")
    assert last["text"].startswith("nbcache: computed ")
    assert "resumed at step " in last["text"]  # the line it replaced said so
    display_id = first["transient"]["display_id"]
    assert last["transient"] == {"display_id": display_id} and last["update"] is True
    assert ip.user_ns["acc"] == list(range(10))
    # The next cell's line is a line of its own, not a replacement of this one.
    ip.run_cell("%%cache\ny = 1\n")  # type: ignore[no-untyped-call]
    assert "update" not in _statuses(calls)[-1]
