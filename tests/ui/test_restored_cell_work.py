"""The work ``nbcache run``'s kernel does for each cell it restores in one request (see
nbcache.notebooks.batchside), counted: each cell's text is tokenized by IPython's
transforms twice (the cell, and the cell wrapped in ``%%cache --auto``), never again
for its decision or its run; its entry's file is opened once and its header's MAC and
its files checked once, restored from its header or in full; its code is parsed and
analysed once. Counts, not times: what a restored cell costs grows with them."""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.compilerop import CachingCompiler
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.default import set_default_cache
from nbcache.entry.signing import Signer
from nbcache.keys import scope
from nbcache.notebooks import batchside
from nbcache.run import decide
from nbcache.run.cellrun import Unchanged
from nbcache.run.effects import forget_seeds
from nbcache.store.local import LocalStore
from tests.shells import KernelSession, close_shell, new_shell

CELLS = [
    "import json",
    "n = 10",
    "xs = list(range(n))\nprint('xs', len(xs))",
    "total = sum(xs)\ntotal",
    "doubled = [x * 2 for x in xs]",
    "def scale(v, k=2):\n    return v * k",
    "scaled = scale(total)\nscaled",
    "text = json.dumps({'total': total})",
    "text",
]


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Any]]:
    """Opens shells as the kernels of ``nbcache run`` (auto mode lazy, a cell log) on one
    store, one after the other."""
    monkeypatch.setenv("NBCACHE_AUTO", "lazy")
    monkeypatch.setenv("NBCACHE_AUTO_LOG", str(tmp_path / "cells.log"))
    shells: list[InteractiveShell] = []

    def close() -> None:
        shell = shells.pop()
        del shell.kernel  # set after nbcache loaded: its editor's comm never opened
        close_shell(shell)

    def open_shell() -> InteractiveShell:
        if shells:
            close()
        set_default_cache(None)  # a new kernel: nothing in memory
        forget_seeds()
        shell = new_shell(tmp_path)
        shell.kernel = SimpleNamespace(session=KernelSession())
        shells.append(shell)
        return shell

    yield open_shell
    if shells:
        close()


class Counted:
    """Calls of some functions, counted while the batch restores."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {}
        self.monkeypatch = monkeypatch

    def count(self, owner: Any, name: str, label: str) -> None:
        own = getattr(owner, name)
        self.calls[label] = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[label] += 1
            return own(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, counted)


def restore(tmp_path: Path, cells: list[str]) -> dict[str, Any]:
    given, said = tmp_path / "cells.json", tmp_path / "said.json"
    listed = [{"index": i, "id": f"c{i}", "source": s} for i, s in enumerate(cells)]
    given.write_text(json.dumps(listed), encoding="utf-8")
    batchside.restore(str(given), str(said))
    return dict(json.loads(said.read_text(encoding="utf-8")))


def test_a_restored_cell_is_tokenized_twice_read_once_and_parsed_once(
    kernel: Callable[[], InteractiveShell], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = kernel()
    for i, cell in enumerate(CELLS):
        assert shell.run_cell(cell, store_history=True, cell_id=f"c{i}").success
    shell = kernel()
    counted = Counted(monkeypatch)
    counted.count(TransformerManager, "transform_cell", "tokenizer passes")
    opened: Counter[str] = Counter()
    own_open = LocalStore.open_entry

    def open_entry(store: LocalStore, key: str) -> Any:
        opened[key] += 1
        return own_open(store, key)

    monkeypatch.setattr(LocalStore, "open_entry", open_entry)
    counted.count(decide, "analyze", "analyses")
    counted.count(ast, "parse", "parses")
    counted.count(CachingCompiler, "ast_parse", "parses")  # IPython's, into the same count
    counted.count(builtins, "open", "file objects")
    counted.count(Signer, "sign", "MAC checks")
    counted.count(Unchanged, "__call__", "outside checks")
    edited = [*CELLS[:-1], "_edited = 1\n" + CELLS[-1]]

    said = restore(tmp_path, edited)

    restored = len(said["cells"])
    assert restored == len(CELLS) - 1  # every cell before the edited one
    assert said["stopped"]["index"] == len(CELLS) - 1
    # the one that stopped the batch was transformed, read and analysed for its decision
    looked = restored + 1
    assert counted.calls == {
        "tokenizer passes": 2 * looked,
        "analyses": looked,
        # one of each cell, auto mode's, which its analysis takes (the batch reads the
        # body from the call's text), and IPython's of the call it runs
        "parses": looked + restored,
        # one per entry (the edited cell has none), the one restored in full too
        "MAC checks": restored,
        "outside checks": restored,
        # the request's cells and what it says back, and each entry's; a cell's line in
        # the log is one write, with no file object of its own
        "file objects": 2 + restored,
    }
    # each entry's file once: its header restores the cell, or says it is no entry (the
    # edited cell's), or that the cell binds notebook code: its value is then loaded from
    # the same open file
    assert sorted(opened.values()) == [1] * looked
    # restored as a plain run leaves them: names bound (values still in the store) and
    # the prompt numbers of the results
    assert {"n", "xs", "total", "scaled", "text"} <= set(shell.user_ns)
    assert shell.execution_count == 1 + restored
    assert sorted(shell.user_ns["Out"]) == [4, 7]  # the cells with a result, numbered
    assert scope.analyze("text").reads == ("text",)  # the analysis itself is untouched


def test_a_cell_under_a_future_flag_is_analysed_from_a_parse_of_its_own(
    kernel: Callable[[], InteractiveShell],
) -> None:
    """Auto mode's parse of a cell is made with the ``__future__`` flags the notebook
    set, which can change what parses: its tree is then not the analysis's."""
    shell = kernel()
    assert shell.run_cell("from __future__ import barry_as_FLUFL", cell_id="f0").success
    assert shell.run_cell("different = 1 <> 2", cell_id="f1").success

    assert shell.user_ns["different"] is True
    runner = shell.magics_manager.registry["NbcacheMagics"].cells
    # as without the flag's parse: Python's own parse of the text fails, so it runs as
    # Python runs it
    assert runner.why("f1") == ["it does not parse, so Python runs it as it is"]


READ_BYTES: Counter[str] = Counter()  # by entry key, what a CountingFile read


class CountingFile(io.FileIO):
    """An entry's file that counts the bytes read from it."""

    key = ""

    def readinto(self, buffer: Any) -> int:
        got = super().readinto(buffer)
        READ_BYTES[self.key] += got or 0
        return got or 0

    def read(self, size: int = -1) -> bytes:
        got = super().read(size)
        READ_BYTES[self.key] += len(got or b"")
        return got or b""


def test_a_cell_restored_from_its_header_reads_its_header_not_its_value(
    kernel: Callable[[], InteractiveShell], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large entry's value stays unread in the store while its cell restores from the
    header: the batch reads where the header lies, not the whole file."""
    cells = ["blob = bytes(300_000)", "small = 1", "later = small + 1"]
    shell = kernel()
    for i, cell in enumerate(cells):
        assert shell.run_cell(cell, store_history=True, cell_id=f"c{i}").success
    shell = kernel()
    own_open = LocalStore.open_entry
    sizes: dict[str, int] = {}

    def open_entry(store: LocalStore, key: str) -> Any:
        f = own_open(store, key)
        sizes[key] = os.fstat(f.fileno()).st_size
        counting = CountingFile(os.dup(f.fileno()), "rb")
        counting.key = key
        f.close()
        return counting

    monkeypatch.setattr(LocalStore, "open_entry", open_entry)
    READ_BYTES.clear()

    said = restore(tmp_path, [*cells[:-1], "_edited = 1\n" + cells[-1]])

    assert len(said["cells"]) == 2
    assert type(shell.user_ns["blob"]).__name__ == "StandIn"  # restored from its header
    largest = max(sizes, key=sizes.__getitem__)
    assert sizes[largest] > 300_000
    assert 0 < READ_BYTES[largest] < 16_384
