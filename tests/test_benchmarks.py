"""Smoke test of ``python -m benchmarks`` at a tiny size: it runs and reports every row.

Never asserts on timings (they depend on the machine); only that every row is
there, with positive numbers where numbers belong.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# The corpus's download folder is read when it is imported, before each test points
# XDG_CACHE_HOME at its own folder: imported here, it is the machine's, downloaded once.
from tests.notebooks.transparency import corpus  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SIZE = "8MB"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The benchmarks package, importable from the project root."""
    monkeypatch.syspath_prepend(str(ROOT))
    return {
        name: importlib.import_module(f"benchmarks.{name}")
        for name in (
            "__main__",
            "common",
            "store_io",
            "keys_memo",
            "cells",
            "background",
            "on_dask",
            "s3",
            "store_scale",
            "hashing_scale",
            "notebook_overhead",
            "resume",
            "whole_notebook",
            "restored_cells",
            "printing",
        )
    }


def test_store_io_rows(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    common, store_io = bench["common"], bench["store_io"]
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = store_io.run(settings)
    assert [row.name for row in rows] == list(store_io.NAMES)
    for row in rows:
        assert all(t > 0 for t in row.times), row
        if row.best is not None:
            assert row.best > 0 and row.median is not None and row.median > 0, row
        figure = row.figure
        assert figure is None or figure > 0, row
        if row.target is not None:
            assert figure is not None and row.met in (True, False), row
    timed = {row.name: row for row in rows}
    assert timed[store_io.NB_WRITE_FSYNC].throughput > 0
    assert timed[store_io.NP_SAVE].ratio > 0
    assert timed[store_io.SHARE_READ].share > 0
    # every file the run made is gone, so repeated runs do not fill the disk
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_keys_and_memoize_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, keys_memo = bench["common"], bench["keys_memo"]
    monkeypatch.setattr(keys_memo, "CALLS", 1000)
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = keys_memo.HASHING.run(settings) + keys_memo.MEMOIZE.run(settings)
    assert [row.name for row in rows] == list(keys_memo.NAMES)
    for row in rows:
        assert row.times and all(t > 0 for t in row.times), row
        if row.target is not None:
            assert row.figure is not None and row.figure > 0 and row.met in (True, False), row
    table = common.markdown_table(rows)
    assert "µs" in table and "≤ 1 µs" in table and "< 0.3 ms" in table
    # The targets printed are the ones the README's performance table states.
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    performance = readme[readme.index("## Performance") :]
    memoize_targets = {row.target.text for row in rows if row.group == "memoize" and row.target}
    assert memoize_targets and all(text in performance for text in memoize_targets), memoize_targets
    # CPU time beside the wall clock, for every memoize row that ran in a child or a loop.
    assert all(row.cpu for row in rows if row.group == "memoize" and "large" not in row.name)


def test_cells_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, cells = bench["common"], bench["cells"]
    monkeypatch.setattr(cells, "MISS_CELL", cells.MISS_CELL.replace("sleep(1.0)", "sleep(0.05)"))
    before = os.environ["NBCACHE_DIR"]
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = cells.GROUP.run(settings)
    assert [row.name for row in rows] == list(cells.NAMES)
    for row in rows:
        if row.target is not None:
            assert row.figure is not None and row.figure >= 0 and row.met in (True, False), row
    assert os.environ["NBCACHE_DIR"] == before  # the shell's settings are undone


def test_background_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, background = bench["common"], bench["background"]
    monkeypatch.setattr(background, "TRIVIAL_RUNS", 5)
    monkeypatch.setattr(background, "SUBMIT_CELL", background.SUBMIT_CELL.replace("1.0", "0.05"))
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = background.run(settings, busy_seconds=0.3)
    assert [row.name for row in rows] == list(background.NAMES)
    for row in rows:
        if row.target is not None:
            assert row.figure is not None and row.figure > 0 and row.met in (True, False), row


def test_resume_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, resume = bench["common"], bench["resume"]
    from nbcache.run import snapshots

    monkeypatch.setattr(resume, "STEPS", 40)
    monkeypatch.setattr(resume, "STATE_BYTES", 1_000_000)
    monkeypatch.setattr(resume, "STEP_SECONDS", 0.002)
    monkeypatch.setattr(snapshots, "FLOOR", 0.01)
    rows = resume.run(common.Settings(size=1_000_000, repeat=1, directory=tmp_path))
    assert [row.name for row in rows] == list(resume.NAMES)
    assert all(row.figure is not None and row.figure >= 0 for row in rows[2:]), rows


def test_dask_rows(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    """The group runs on a real LocalCluster, reports every row, and leaves no workers."""
    import psutil

    common, on_dask = bench["common"], bench["on_dask"]
    before = set(psutil.Process().children(recursive=True))
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = on_dask.run(settings)
    assert [row.name for row in rows] == list(on_dask.NAMES)
    for row in rows:
        assert all(t > 0 for t in row.times), row
        if row.target is not None:
            assert row.figure is not None and row.met in (True, False), row
    assert "≤ 50 ms" in common.markdown_table(rows)
    started = [p for p in psutil.Process().children(recursive=True) if p not in before]
    workers = [p for p in started if "resource_tracker" not in _command(p)]
    _, alive = psutil.wait_procs(workers, timeout=20)  # multiprocessing's tracker stays
    assert not alive


def _command(process: Any) -> str:
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # it ended meanwhile
        return ""


def _recording_servers(s3: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make the s3 group keep each moto server it starts in the returned list."""
    started: list[Any] = []
    server_class = s3._server_class()

    def recording(folder: Path) -> Any:
        started.append(server_class(folder))
        return started[-1]

    monkeypatch.setattr(s3, "_server_class", lambda: recording)
    return started


def test_s3_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group really runs against a moto server (a 1.6 MB array), then stops it."""
    common, s3 = bench["common"], bench["s3"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://the-shell-had-this:1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    started = _recording_servers(s3, monkeypatch)
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = s3.run(settings)
    assert [row.name for row in rows] == list(s3.NAMES)
    for row in rows:
        assert row.times and all(t > 0 for t in row.times), row
        if row.target is not None:
            assert row.ratio is not None and row.ratio > 0 and row.met in (True, False), row
    timed = {row.name: row for row in rows}
    assert timed[s3.NB_PUT].nbytes == timed[s3.S3FS_GET].nbytes == 1_600_000
    assert timed[s3.NB_GET].throughput > 0
    assert "(medians)" in common.markdown_table(rows)
    # the server is stopped, the shell's AWS settings are back, the folder is gone
    assert len(started) == 1 and started[0].proc.poll() is not None
    assert os.environ["AWS_ENDPOINT_URL"] == "http://the-shell-had-this:1"
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    assert not list(tmp_path.iterdir())


def test_s3_stops_its_server_on_failure(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, s3 = bench["common"], bench["s3"]
    started = _recording_servers(s3, monkeypatch)

    def broken(settings: Any, url: str) -> Any:
        assert os.environ["AWS_ENDPOINT_URL"] == started[0].endpoint
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(s3, "_measure", broken)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        s3.run(settings)
    assert started[0].proc.poll() is not None
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_command_prints_a_markdown_table(
    bench: dict[str, ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main, store_io = bench["__main__"], bench["store_io"]
    files, raw = tmp_path / "files", tmp_path / "raw.json"
    argv = ["--size", SIZE, "--repeat", "1", "--dir", str(files), "--only", "store_io"]
    assert main.main([*argv, "--json", str(raw)]) == 0
    out = capsys.readouterr().out
    assert f"python -m benchmarks --size {SIZE} --repeat 1" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Group | Benchmark | Best | Median")
    names = [line.split(" | ")[1] for line in table[1:]]
    assert names == list(store_io.NAMES)
    assert "pass" in out or "MISS" in out
    assert list(files.iterdir()) == []  # its temporary folder is removed
    data = json.loads(raw.read_text())
    rows = data["groups"]["store_io"]
    assert [row["name"] for row in rows] == list(store_io.NAMES)
    assert all(t > 0 for row in rows for t in row["seconds"])


def test_command_rejects_bad_options(
    bench: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    main = bench["__main__"].main
    bad = (
        ["--size", "lots"],
        ["--repeat", "0"],
        ["--only", "nope"],
        ["--entries", "0"],
        ["--objects", "many"],
    )
    for argv in bad:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "cannot read the size" in capsys.readouterr().err


def test_store_scale_rows(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    """Every row at two tiny store sizes; the stores are gone afterwards."""
    common, store_scale = bench["common"], bench["store_scale"]
    before = os.environ.get("NBCACHE_SECRET")
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = store_scale.run(settings, entries=(30, 10))
    assert [(row.group, row.name) for row in rows] == store_scale.names((10, 30))
    for row in rows:
        assert row.times and all(t > 0 for t in row.times), row
        if row.target is not None:
            assert row.figure is not None and row.figure > 0 and row.met in (True, False), row
    targets = [row.target.text for row in rows if row.target is not None]
    assert targets == ["≤ 1.50×", "≤ 1 s", "≤ 10 ms"]  # at the largest size only
    assert os.environ.get("NBCACHE_SECRET") == before
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_hashing_scale_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row, each from a child process; a row that hangs or raises says so instead."""
    import importlib.util

    common, hashing_scale = bench["common"], bench["hashing_scale"]
    monkeypatch.setattr(hashing_scale, "TIMEOUT", 1.0)
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = hashing_scale.run(settings, sizes=(300, 100))
    assert [(row.group, row.name) for row in rows] == hashing_scale.names((100, 300))
    no_sklearn = importlib.util.find_spec("sklearn") is None
    for row in rows:
        assert all(t > 0 for t in row.times), row
        if row.group == "real objects":
            # a timeout, or nbcache refusing a live object, is a result too
            assert row.times or row.status, row
            if "sklearn" in row.name and no_sklearn:
                assert row.status.startswith("error"), row
            continue
        assert not row.status.startswith(("error", "raises")), row
        if row.target is None:
            assert row.times or row.status.startswith("timeout"), row
        else:
            assert (row.figure is not None and row.figure > 0) or row.status, row
            assert row.figure is None or row.met in (True, False), row
    table = common.markdown_table(rows)
    assert table.count("≤ 2.00×") == len(hashing_scale.KINDS)  # one growth row each
    assert table.count("≤ 2× pickle's time") == 2 * len(hashing_scale.KINDS)


def test_hashing_scale_reports_a_timeout(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    hashing_scale = bench["hashing_scale"]
    monkeypatch.setattr(hashing_scale, "BUILD_TIMEOUT", 1.0)
    result = hashing_scale.measure_child("hang", 0, 1)
    assert result.timed_out == "build" and not any(result.times.values())
    assert hashing_scale._status(result, hashing_scale.NB) == "build timed out"


def test_notebook_overhead_rows(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    common, notebook_overhead = bench["common"], bench["notebook_overhead"]
    before = {k: os.environ.get(k) for k in ("NBCACHE_DIR", "NBCACHE_SECRET")}
    settings = common.Settings(size=8_000_000, repeat=1, directory=tmp_path)
    rows = notebook_overhead.run(settings)
    assert [row.name for row in rows] == list(notebook_overhead.NAMES)
    for row in rows:
        assert row.times and all(t > 0 for t in row.times), row
        assert row.figure is not None, row
        if row.target is not None:
            assert row.met in (True, False), row
    assert {k: os.environ.get(k) for k in before} == before
    assert not list(tmp_path.iterdir())


def test_restored_cells_rows(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    common, restored_cells = bench["common"], bench["restored_cells"]
    before = {k: os.environ.get(k) for k in ("NBCACHE_DIR", "NBCACHE_SECRET", "NBCACHE_AUTO")}
    settings = common.Settings(size=0, repeat=1, directory=tmp_path)
    rows = restored_cells.run(settings)
    names = [row.name for row in rows]
    assert names == list(restored_cells.NAMES) * len(restored_cells.NOTEBOOKS)
    for row in rows:
        if row.target is None:
            assert row.cpu and all(t > 0 for t in row.cpu), row
        else:
            assert row.figure is not None and row.met in (True, False), row
    # The target printed is the one the README's performance table states.
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert restored_cells.TARGET.text in readme[readme.index("## Performance") :]
    assert {k: os.environ.get(k) for k in before} == before
    assert not list(tmp_path.iterdir())


def test_whole_notebook_rows(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    common, whole = bench["common"], bench["whole_notebook"]
    settings = common.Settings(size=0, repeat=1, directory=tmp_path)
    rows = whole.run(settings, ("statsmodels/glm",))
    names = [row.name for row in rows]
    assert names[:3] == [whole.KERNEL, whole.PLAIN, whole.FIRST]
    assert {whole.VS_JCACHE_UNCHANGED, whole.VS_NEEDED} <= set(names)
    targets = {row.name: row.target for row in rows if row.target is not None}
    assert targets == {
        whole.VS_JCACHE_UNCHANGED: whole.UNCHANGED_TARGET,
        whole.VS_NEEDED: whole.EDITED_TARGET,
    }
    for row in rows:
        if row.times:
            assert all(t > 0 for t in row.times), row
        if row.target is not None:
            assert row.met in (True, False), row
    loaded = next(row for row in rows if row.name == whole.LOADED)
    assert "from" in str(loaded.status)
    # the edited cell reads arrays: the bound imports numpy for them
    modules = next(row for row in rows if row.name == whole.MODULES)
    assert "numpy" in str(modules.status).split(", ")
    assert not (tmp_path / "whole-notebook").exists()  # kernels' matplotlib config stays


def test_printing_rows(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, printing = bench["common"], bench["printing"]
    monkeypatch.setattr(printing, "PRINT_BYTES", 200_000)
    settings = common.Settings(size=0, repeat=1, directory=tmp_path)
    rows = printing.run(settings)
    assert [row.name for row in rows] == list(printing.NAMES)
    for row in rows:
        if row.times:
            assert all(t > 0 for t in row.times), row
        if row.target is not None:
            assert row.figure is not None and row.figure > 0 and row.met in (True, False), row
    again = next(row for row in rows if row.name == printing.RUN_AGAIN)
    assert again.versus == "the cell restored"
    assert not (tmp_path / "printing").exists()


def test_file_system_of_a_path(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    fstype, mount = bench["common"].file_system(tmp_path)
    assert fstype != "unknown"
    assert os.path.realpath(tmp_path).startswith(mount)
