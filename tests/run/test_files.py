"""``run/files.py``: the files a cell reads and writes, recorded by an audit hook, and
what a later look at them says; then the same through the fake shell's cells."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.files import KEPT_WRITE, FileReads, Written
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_a_file_read_is_recorded_as_spelt_and_by_its_real_path(tmp_path: Path) -> None:
    Path("data.csv").write_text("a,b\n1,2\n")
    with FileReads.recording() as read:
        Path("data.csv").read_text()
    reads = FileReads.of(read)
    assert reads.paths == {"data.csv": str(tmp_path / "data.csv")}
    assert reads.changed() == []


def test_a_changed_file_is_a_reason(tmp_path: Path) -> None:
    Path("data.csv").write_text("1")
    with FileReads.recording() as read:
        Path("data.csv").read_text()
    reads = FileReads.of(read)
    Path("data.csv").write_text("2")
    assert reads.changed() == [f"file `{tmp_path / 'data.csv'}` changed"]


def test_the_same_name_meaning_another_file_is_a_reason(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.csv").write_text("same")
    os.chdir("one")
    with FileReads.recording() as read:
        Path("data.csv").read_text()
    reads = FileReads.of(read)
    os.chdir(tmp_path / "two")
    assert reads.changed() == [f"file `data.csv` now means {tmp_path / 'two' / 'data.csv'}"]


def test_files_written_deleted_and_excluded(tmp_path: Path) -> None:
    """A file the cell made and then read is written, not read; an appended log is
    neither; a deleted file is recorded as gone; an excluded folder is not seen."""
    Path("log.txt").write_text("start\n")
    Path("old.txt").write_text("old")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "entry").write_text("x")
    with FileReads.recording(exclude=[str(tmp_path / "store")]) as read:
        Path("out.txt").write_text("made")
        Path("out.txt").read_text()
        with open("log.txt", "a") as log:
            log.write("ran\n")
        os.remove("old.txt")
        (tmp_path / "store" / "entry").read_text()
    assert dict(read) == {}
    assert FileReads.of(read).written.states["out.txt"][0] == 4
    assert FileReads.of(read).written.contents == {"out.txt": b"made"}
    assert FileReads.of(read).written.states["old.txt"] == []
    assert "log.txt" not in FileReads.of(read).written.states


def test_another_thread_is_not_recorded() -> None:
    Path("theirs.txt").write_text("x")
    with FileReads.recording() as read:
        reader = threading.Thread(target=Path("theirs.txt").read_text)
        reader.start()
        reader.join()
    assert dict(read) == {}


def test_put_back_writes_the_file_again_with_its_time_and_deletes_again() -> None:
    Path("gone.txt").write_text("x")
    with FileReads.recording() as read:
        Path("out.txt").write_text("made")
        os.remove("gone.txt")
    written = FileReads.of(read).written
    made = os.stat("out.txt").st_mtime_ns
    os.remove("out.txt")
    Path("gone.txt").write_text("back again")
    assert sorted(written.put_back(written.contents)) == ["gone.txt", "out.txt"]
    assert Path("out.txt").read_text() == "made" and os.stat("out.txt").st_mtime_ns == made
    assert not Path("gone.txt").exists()
    assert written.put_back(written.contents) == []  # as the cell left them: nothing to do


def test_a_written_file_too_large_to_keep_is_missing_when_changed() -> None:
    with FileReads.recording() as read, open("big.bin", "wb") as f:
        f.truncate(KEPT_WRITE + 1)
    written = FileReads.of(read).written
    assert written.contents == {} and written.states["big.bin"][2] is None
    assert written.missing() == []
    os.remove("big.bin")
    assert written.missing() == [
        "file `big.bin`, which the cell wrote, is missing or changed and too large to keep "
        f"with the entry ({KEPT_WRITE + 1} bytes)"
    ]


def test_merged_keeps_both_sides() -> None:
    Path("a.txt").write_text("a")
    Path("b.txt").write_text("b")
    left = FileReads.of(["a.txt"])
    right = FileReads(written=Written({"w.txt": []}, {}))
    both = left.merged(right).merged(FileReads.of(["b.txt"]))
    assert set(both.paths) == {"a.txt", "b.txt"} and both.written.states == {"w.txt": []}


def test_a_watched_folder_changes_when_a_file_in_it_does(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "one.csv").write_text("1")
    watched = FileReads.of(["inputs"])
    assert watched.changed() == []
    (tmp_path / "inputs" / "one.csv").write_text("2")  # same size, another time
    os.utime(tmp_path / "inputs" / "one.csv", ns=(10**18, 10**18))
    assert watched.changed() == [f"file `{tmp_path / 'inputs'}` changed"]
    watched = FileReads.of(["inputs"])
    (tmp_path / "inputs" / "two.csv").write_text("")  # a new, empty file
    assert watched.changed() == [f"file `{tmp_path / 'inputs'}` changed"]


# -- through cells ---------------------------------------------------------------------


def _cells(root: Path) -> tuple[FakeShell, CellRunner]:
    shell = FakeShell()
    cache = Cache(LocalStore(root), signer=Signer(b"secret"))
    return shell, CellRunner(shell, lambda: cache)


def test_a_cell_runs_again_when_a_file_it_read_changed(tmp_path: Path) -> None:
    Path("n.txt").write_text("3")
    cell = "n = int(open('n.txt').read())"
    shell, cells = _cells(tmp_path / "store")
    cells.run(cell, CellOptions())
    cells.run(cell, CellOptions())
    Path("n.txt").write_text("4")
    cells.run(cell, CellOptions())
    assert [r.outcome for r in shell.reports] == ["computed", "restored", "computed"]
    assert shell.user_ns["n"] == 4


def test_a_hit_writes_back_the_file_the_cell_wrote(tmp_path: Path) -> None:
    cell = "open('report.txt', 'w').write('total: 6')"
    _first, cells = _cells(tmp_path / "store")
    cells.run(cell, CellOptions())
    os.remove("report.txt")
    second, again = _cells(tmp_path / "store")
    again.run(cell, CellOptions())
    assert [r.outcome for r in second.reports] == ["restored"]
    assert Path("report.txt").read_text() == "total: 6"
