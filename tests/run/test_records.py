"""``run/records.py``: a cell's entry, its latest record and its header record read back
from their stored forms as written, and anything else read as None, never an error."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
from mypy import api

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions, ModuleRef
from nbcache.run.output import NO_RESULT
from nbcache.run.records import CellEntry, HeaderRecord, LatestRun, RecordedVar, header_meta
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell

# The keys of an entry as the store has always kept them: entries on users' disks
# have them, so the stored form must keep them.
STORED_KEYS = {
    "vars",
    "deleted",
    "outputs",
    "result",
    "digests",
    "plain",
    "effects",
    "shared",
    "file_contents",
    "wrote",
}


def _entry() -> CellEntry:
    return CellEntry(
        vars={"x": 3, "np": ModuleRef("numpy")},
        deleted=["old"],
        outputs=[("stdout", "hi\n"), ("result", {"text/plain": "3"}, {})],
        result=3,
        digests={"x": "d" * 32, "np": None},
        plain=["x"],
        effects={"random": "state"},
        shared=[],
        file_contents={"out.txt": b"data"},
        wrote={"out.txt": [4, 1, "e" * 32, True]},
    )


def test_an_entry_reads_back_from_its_stored_form_and_its_pickle() -> None:
    entry = _entry()
    stored = entry.stored()
    assert set(stored) == STORED_KEYS and type(stored) is dict
    assert CellEntry.read(stored) == entry
    assert CellEntry.read(pickle.loads(pickle.dumps(stored))) == entry


def test_an_entry_stored_before_the_later_keys_reads_with_their_defaults() -> None:
    old = {"vars": {"x": 1}, "deleted": [], "outputs": [], "result": NO_RESULT}
    entry = CellEntry.read(old)
    assert entry is not None and entry.vars == {"x": 1} and entry.result is NO_RESULT
    assert (entry.digests, entry.plain, entry.effects, entry.wrote) == ({}, [], {}, {})


def test_output_events_come_back_as_tuples() -> None:
    """As an output log keeps them, whether pickled as tuples or given as lists."""
    entry = CellEntry.read({**_entry().stored(), "outputs": [["stdout", "hi\n"]]})
    assert entry is not None and entry.outputs == [("stdout", "hi\n")]


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"vars",
        ["vars"],
        {},
        {"vars": {}},  # no deleted, outputs, result
        {"vars": {1: 2}, "deleted": [], "outputs": [], "result": None},
        {"vars": [], "deleted": [], "outputs": [], "result": None},
        {"vars": {}, "deleted": "x", "outputs": [], "result": None},
        {"vars": {}, "deleted": [1], "outputs": [], "result": None},
        {"vars": {}, "deleted": [], "outputs": "hi", "result": None},
        {"vars": {}, "deleted": [], "outputs": [()], "result": None},
        {"vars": {}, "deleted": [], "outputs": [], "result": None, "digests": {"x": 3}},
        {"vars": {}, "deleted": [], "outputs": [], "result": None, "plain": "x"},
        {"vars": {}, "deleted": [], "outputs": [], "result": None, "effects": ["random"]},
        {"vars": {}, "deleted": [], "outputs": [], "result": None, "wrote": [1]},
        {"vars": {}, "deleted": [], "outputs": [], "result": None, "wrote": {"f": 1}},
        {"vars": {}, "deleted": [], "outputs": [], "result": None, "file_contents": {"f": "s"}},
    ],
)
def test_what_is_no_entry_reads_as_none(value: Any) -> None:
    assert CellEntry.read(value) is None


def test_a_latest_record_reads_back_through_json() -> None:
    summary = {"kind": "cell", "identity": "cell: x = 1", "deps": {}, "args": {}}
    latest = LatestRun(summary, 1.5, "k" * 32, 120, {"x": "d" * 32}, ["old"])
    assert LatestRun.read(json.loads(json.dumps(latest.stored_form()))) == latest


def test_a_latest_record_with_the_summary_alone_reads() -> None:
    """A background cell notes its seconds only, a memoized function its summary only;
    what the cache adds (why the entry did not load) stays in the summary."""
    summary = {"kind": "cell", "deps": {}, "args": {}}
    background = LatestRun(summary, 2.0).stored_form()
    assert set(background) == {*summary, "seconds"}
    assert LatestRun.read(background) == LatestRun(summary, 2.0)
    read = LatestRun.read({**summary, "unloadable": "a class was renamed"})
    assert read is not None and read.seconds is None and read.key is None and read.stored == 0
    assert read.summary["unloadable"] == "a class was renamed"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "summary",
        [],
        {"seconds": "fast"},
        {"seconds": True},
        {"key": 3},
        {"stored": "yes"},
        {"digests": {"x": None}},
        {"digests": ["x"]},
        {"deleted": "x"},
    ],
)
def test_what_is_no_latest_record_reads_as_none(value: Any) -> None:
    assert LatestRun.read(value) is None


def _record() -> HeaderRecord:
    return HeaderRecord(
        vars={
            "x": RecordedVar("d" * 32, {"type": "int"}),
            "q": RecordedVar("e" * 32, {"type": "str"}, ("limit",)),
        },
        deleted=["old"],
        outputs=[["stdout", "hi\n"], ["result", {"text/plain": "3"}, {}]],
        result=True,
    )


def test_a_header_record_reads_back_from_the_signed_metadata() -> None:
    record = _record()
    meta = json.loads(json.dumps({"label": "x", **header_meta(record)}))
    assert HeaderRecord.of_meta(meta) == record
    assert "string_reads" not in meta["recorded"]["vars"]["x"]  # as before: strings only


def test_an_entry_that_restores_in_full_has_no_header_record() -> None:
    assert header_meta(None) == {"recorded": None}
    assert HeaderRecord.of_meta(header_meta(None)) is None
    assert HeaderRecord.of_meta({}) is None


@pytest.mark.parametrize(
    "change",
    [
        {"vars": []},
        {"vars": {"x": "digest"}},
        {"vars": {"x": {"digest": 3}}},
        {"vars": {"x": {"digest": "d", "described": []}}},
        {"vars": {"x": {"digest": "d", "string_reads": [1]}}},
        {"vars": {"x": {"digest": "d", "string_reads": "a"}}},
        {"deleted": None},
        {"outputs": {}},
        {"result": "yes"},
        {"result": None},
    ],
)
def test_what_is_no_header_record_reads_as_none(change: dict[str, Any]) -> None:
    assert HeaderRecord.read({**_record().stored(), **change}) is None


def test_a_forged_entry_under_a_cell_key_is_a_miss_and_the_cell_runs(tmp_path: Path) -> None:
    """A signed value that holds no cell's entry does not break the restore: it warns
    and the cell body runs, as on a miss."""
    cache = Cache(LocalStore(tmp_path), signer=Signer(b"secret"))
    shell = FakeShell()
    cells = CellRunner(shell, lambda: cache)
    cells.run("y = 2", CellOptions())
    (record,) = cache.ledger.records()
    cache.overwrite(record.key, {"not": "an entry"})
    fresh = Cache(LocalStore(tmp_path), signer=Signer(b"secret"))
    again = FakeShell()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CellRunner(again, lambda: fresh).run("y = 2", CellOptions())
    assert again.user_ns["y"] == 2
    assert any("holds no cell's variables" in str(w.message) for w in caught)


SNIPPET = """
from nbcache.run.records import CellEntry


def names(value: object) -> list[str]:
    entry = CellEntry.read(value)
    return [] if entry is None else sorted(entry.{field})
"""


@pytest.mark.parametrize(("field", "passes"), [("vars", True), ("varz", False)])
def test_mypy_sees_the_fields_of_an_entry(tmp_path: Path, field: str, passes: bool) -> None:
    """A misspelt field is a type error; only this module and the snippet are checked."""
    path = tmp_path / "snippet.py"
    path.write_text(SNIPPET.format(field=field))
    records = Path(__file__).resolve().parents[2] / "nbcache" / "run" / "records.py"
    args = ["--strict", "--follow-imports=skip", "--cache-dir", str(tmp_path / "cache")]
    out, _err, status = api.run([*args, str(path), str(records)])
    assert (status == 0) is passes, out
    if not passes:
        assert '"CellEntry" has no attribute "varz"' in out, out


def test_a_cell_stores_its_entry_as_the_plain_dict_it_always_was(tmp_path: Path) -> None:
    """The store keeps no class of this module: entries on disk load in any version."""
    first = Cache(LocalStore(tmp_path), signer=Signer(b"secret"))
    CellRunner(FakeShell(), lambda: first).run("z = 5\nz", CellOptions())
    cache = Cache(LocalStore(tmp_path), signer=Signer(b"secret"))
    (record,) = cache.ledger.records()
    hit = cache.lookup(record.key)
    assert hit is not None and type(hit.value) is dict and set(hit.value) == STORED_KEYS
    entry = CellEntry.read(hit.value)
    assert entry is not None and entry.vars == {"z": 5} and entry.result == 5


def test_a_checkpoint_reads_back_and_a_malformed_one_is_none() -> None:
    from nbcache.run.records import Checkpoint

    made = Checkpoint("k" * 32, 7, {"total": 21}, [], {}, [("stdout", "step 6\n")], 1.5)
    back = Checkpoint.read(made.stored())
    assert back == made and back.entry().vars == {"total": 21}
    for broken in (
        None,
        [],
        {**made.stored(), "step": "7"},
        {**made.stored(), "vars": {1: 2}},
        {**made.stored(), "outputs": "step 6"},
        {**made.stored(), "cell": None},
        {**made.stored(), "seconds": True},
    ):
        assert Checkpoint.read(broken) is None, broken


def test_an_entrys_outside_inputs_that_do_not_read_count_as_changed() -> None:
    from nbcache.entry.format import EntryInfo
    from nbcache.run.cellrun import Unchanged
    from nbcache.run.records import EntryInputs

    assert EntryInputs.of_meta({}) == EntryInputs()  # an entry made before they were kept
    assert EntryInputs.of_meta({"files": ["a"]}) is None
    check = Unchanged()
    info = EntryInfo("k" * 32, 0.0, 0, {"wrote": "not a mapping"}, "0", False)
    assert check(info) is False and "does not read" in check.stale[0]
