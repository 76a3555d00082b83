"""Records read from signed headers and entries, malformed: a bug, an older or newer
nbcache, a teammate's tool that shares the secret. Each reads as no record or as
changed, never as a hit, never as a traceback in the user's cell or in `nbcache run`,
and never as an invalid notebook written."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbcache.cache.core import Cache
from nbcache.cache.terms import Ask
from nbcache.entry.signing import Signer
from nbcache.notebooks.unchanged import Whole, file_digest
from nbcache.run.cellrun import Unchanged
from nbcache.run.records import Checkpoint, EntryInputs
from nbcache.store import LocalStore
from tests.conftest import key_of

NUL = "data\0.csv"


@pytest.mark.parametrize(
    "meta",
    [
        {"files": {NUL: [1, 2, None]}},
        {"paths": {NUL: "/tmp/x"}},
        {"wrote": {NUL: [1, 2]}},
        {"files": {"/etc/hostname": "not a state"}},
        {"paths": {"data.csv": 5}},
        {"wrote": {"out.csv": ""}},
    ],
    ids=["read-nul", "path-nul", "wrote-nul", "state-str", "path-int", "wrote-str"],
)
def test_malformed_inputs_read_as_changed(
    meta: dict[str, Any], cache: Cache, tmp_path: Path
) -> None:
    """The files an entry names are checked by stat and open: a name with a NUL made each
    raise ValueError, which no caller catches."""
    os.chdir(tmp_path)
    assert EntryInputs.of_meta(meta) is None
    cache.put(key_of(1), {"x": 1}, {"files": {}, "paths": {}, **meta})
    validate = Unchanged()
    assert cache.peek(key_of(1), Ask(validate=validate)) is None
    assert validate.stale


def test_a_checkpoint_naming_a_file_with_a_nul_is_none() -> None:
    base = {"cell": "k", "step": 1, "vars": {}, "deleted": [], "outputs": []}
    assert Checkpoint.read(base) is not None
    assert Checkpoint.read({**base, "files": {NUL: [1, 2, None]}}) is None
    assert Checkpoint.read({**base, "paths": {NUL: "x"}}) is None


def _whole(tmp_path: Path) -> tuple[Whole, Cache, Any]:
    cache = Cache(LocalStore(tmp_path / "store"), signer=Signer(b"k" * 32))
    entry = key_of(7)
    cache.put(entry, {"x": 1}, {"files": {}, "paths": {}})
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", id="a", execution_count=1)]
    logged = [{"cell_id": "a", "outcome": "ran", "key": entry, "seconds": 0.5}]
    whole = Whole(key_of(8), tmp_path, {}, cache)
    assert whole.keep(nb, logged, 1.0, "nb.ipynb")
    return whole, cache, nb


def _cell(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**record, "cells": [{**record["cells"][0], **fields}]}


FORGED = {
    "cells-not-dicts": lambda r: {**r, "cells": [1]},
    "outputs-a-string": lambda r: _cell(r, outputs="abc"),
    "output-unknown": lambda r: _cell(r, outputs=[{"output_type": "nonsense"}]),
    "output-an-int": lambda r: _cell(r, outputs=[1]),
    "count-a-string": lambda r: _cell(r, execution_count="one"),
    "seconds-a-string": lambda r: _cell(r, seconds="x"),
    "magic-a-list": lambda r: _cell(r, magic=["time"]),
    "made-a-string": lambda r: {**r, "made": "yesterday"},
    "modules-a-list": lambda r: {**r, "modules": [1, 2]},
    "module-nul": lambda r: {**r, "modules": {NUL: "x"}},
    "path-an-int": lambda r: {**r, "path": 5},
    "path-nul": lambda r: {**r, "path": [NUL]},
    "language-a-string": lambda r: {**r, "language_info": "python"},
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=list(FORGED))
def test_a_malformed_notebook_record_is_no_record(tmp_path: Path, forge: Any) -> None:
    """Restoring from it raised (AttributeError, ValueError, TypeError) or wrote a
    notebook nbformat rejects; now the run starts a kernel as without a record."""
    whole, cache, nb = _whole(tmp_path)
    record = cache.lookup(whole.key).value
    assert whole.restore(copy.deepcopy(nb)) is not None  # the record as kept restores
    cache.overwrite(whole.key, forge(record), {"kind": "notebook"})
    before = copy.deepcopy(nb)
    assert whole.restore(nb) is None
    assert nb == before


def test_a_recorded_module_name_with_a_nul_has_no_digest() -> None:
    assert file_digest(NUL) is None
