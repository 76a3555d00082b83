"""Whole notebooks: ``nbcache run`` after the last cell changed, against a plain
run and against jupyter-cache's re-execution, on real notebooks of the transparency corpus.

For each notebook (:data:`NOTEBOOKS`, kept in the repository and
read by ``tests/notebooks/transparency/corpus.py``), every round, in this process:

1. a plain run: nbclient's ``NotebookClient`` with the ``python3`` kernel, as
   ``jupyter execute`` runs it (kernel start and shutdown included);
2. ``nbcache run`` (``nbcache.notebooks.runner.run_notebook``) on an empty store;
3. the last code cell edited (a cheap edit: ``_nbcache_edit = 1`` put before its
   code), ``nbcache run`` again on that store: only the edited cell should execute,
   and only what it reads should be loaded;
4. jupyter-cache: the notebook added to a project of a new cache (``get_cache``,
   ``add_nb_to_project``), executed with its ``local-serial`` executor
   (``jcache project execute``), the same edit, executed again: the time of that
   re-execution.

The figures are run 3 / plain and run 3 / jupyter-cache's re-execution, best of
each, plus what run 3 loaded (values, and the bytes of the entries they came
from).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbcache.units import format_size

from .common import BENCH_SECRET, Group, Row, Settings, Target, environ, write_notebook

__all__ = ["GROUP", "NOTEBOOKS", "run"]

# Representative and quick (2-5 s plain): a slow model fit among cheap plotting cells,
# a statsmodels tutorial of many small fits, a seaborn tutorial of many small figures.
NOTEBOOKS: tuple[str, ...] = (
    "scikit-learn/plot_forest_importances",
    "statsmodels/glm",
    "seaborn/aesthetics",
)
EDIT = "_nbcache_edit = 1\n"
TIMEOUT = 300

PLAIN = "plain run (jupyter execute)"
FIRST = "nbcache run, first (empty store)"
EDITED = "nbcache run after editing the last cell"
JCACHE = "jupyter-cache re-execution after the edit"
VS_PLAIN = "edited run / plain run"
VS_JCACHE = "edited run / jupyter-cache"
LOADED = "values loaded by the edited run"
KERNEL = "kernel start and stop (an empty notebook)"
BODIES = "edited run: bodies of the cells that ran"
FLOOR = "floor: kernel start, every import and line magic of the notebook"
BEYOND = "edited run / plain run, beyond the floor"

TARGET = Target("<=", 0.10, "≤ 10 %")


def _edited(cells: Sequence[str]) -> list[str]:
    last = max(i for i, c in enumerate(cells) if c.strip())
    out = list(cells)
    out[last] = EDIT + out[last]
    return out


def _floor_cells(cells: Sequence[str]) -> list[str]:
    """What every run of the notebook does whatever is cached: its line magics
    (``%matplotlib inline``) and the imports of every cell (a restore imports the
    modules, classes and functions a cell bound, to unpickle them)."""
    import ast

    out = []
    for cell in cells:
        magics = [ln for ln in cell.splitlines() if ln.lstrip().startswith("%")]
        try:
            tree = ast.parse("\n".join(ln for ln in cell.splitlines() if ln not in magics))
        except SyntaxError:
            continue
        imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if magics or imports:
            out.append("\n".join([*magics, *imports]))
    return out


def _plain(path: Path) -> float:
    """``jupyter execute PATH``, in this process: the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    start = time.perf_counter()
    nb = nbformat.read(os.fspath(path), as_version=4)
    NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return time.perf_counter() - start


def _nbcache(path: Path, store: Path) -> tuple[float, Any]:
    from nbcache.notebooks.runner import run_notebook

    start = time.perf_counter()
    _, summary = run_notebook(path, out=path.with_suffix(".out.ipynb"), store=str(store))
    seconds = time.perf_counter() - start
    if summary.error:
        raise RuntimeError(f"nbcache run {path.name} stopped: {summary.error}")
    return seconds, summary


def _jupyter_cache(path: Path, folder: Path, cells: Sequence[str]) -> float:
    """Add the notebook to a new jupyter-cache project, execute it, edit its last cell and
    execute again: the seconds of the second execution."""
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    cache = get_cache(os.fspath(folder))
    cache.add_nb_to_project(os.fspath(path))
    executor = load_executor("local-serial", cache=cache)
    first = executor.run_and_cache(timeout=TIMEOUT)
    if first.excepted or first.errored or not first.succeeded:
        raise RuntimeError(f"jupyter-cache could not execute {path.name}: {first.as_json()}")
    write_notebook(_edited(cells), path)
    start = time.perf_counter()
    again = executor.run_and_cache(timeout=TIMEOUT)
    seconds = time.perf_counter() - start
    if again.succeeded != first.succeeded:
        raise RuntimeError(f"jupyter-cache did not execute the edited {path.name}: {again}")
    return seconds


def _loaded_bytes(summary: Any, cells: Sequence[str], store: Path) -> int:
    """The bytes of the entries the edited run loaded values from: for each value loaded
    before a cell, the entry of the last cell before it that binds that name (the one it
    was restored from), counted once."""
    from IPython.core.inputtransformer2 import TransformerManager

    from nbcache.cache.core import Cache
    from nbcache.cache.default import open_store
    from nbcache.entry.signing import Signer
    from nbcache.keys.scope import analyze

    loaded = [(c.index, name) for c in summary.cells for name in c.loaded]
    if not loaded:
        return 0
    transform = TransformerManager().transform_cell
    binds: list[frozenset[str]] = []
    for source in cells:
        try:
            binds.append(analyze(transform(source)).binds)
        except SyntaxError:
            binds.append(frozenset())
    records = Cache(open_store(str(store)), signer=Signer(BENCH_SECRET.encode())).ledger.records()
    latest: dict[str, Any] = {}
    for record in records:
        if record.identity not in latest or record.last_used > latest[record.identity].last_used:
            latest[record.identity] = record
    sources: set[str] = set()
    for index, name in loaded:
        base = name.split("[", 1)[0]
        for before in range(index - 1, -1, -1):
            if base in binds[before]:
                sources.add(f"c{before}")
                break
    return sum(latest[cid].size for cid in sources if cid in latest)


def _one(
    name: str, cells: Sequence[str], folder: Path, rounds: int, settings: Settings
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "plain": [],
        "first": [],
        "edited": [],
        "jcache": [],
        "kernel": [],
        "bodies": [],
        "floor": [],
    }
    for r in range(rounds):
        work = folder / f"{r}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        path = work / "notebook.ipynb"
        settings.say(f"whole_notebook: {name}: plain ({r + 1}/{rounds})")
        write_notebook([], work / "empty.ipynb")
        out["kernel"].append(_plain(work / "empty.ipynb"))
        write_notebook(_floor_cells(cells), work / "floor.ipynb")
        out["floor"].append(_plain(work / "floor.ipynb"))
        write_notebook(cells, path)
        out["plain"].append(_plain(path))
        settings.say(f"whole_notebook: {name}: nbcache run ({r + 1}/{rounds})")
        store = work / "store"
        seconds, _ = _nbcache(path, store)
        out["first"].append(seconds)
        write_notebook(_edited(cells), path)
        seconds, summary = _nbcache(path, store)
        out["edited"].append(seconds)
        out["bodies"].append(sum(c.seconds for c in summary.cells if c.outcome != "restored"))
        out["outcomes"] = {o: summary.count(o) for o in ("restored", "ran", "uncached")}
        # kept in memory and always runs executed too: the label counts them as ran
        out["outcomes"]["ran"] += summary.count("kept in memory") + summary.count("always runs")
        out["loaded"] = [n for c in summary.cells for n in c.loaded]
        out["loaded_bytes"] = _loaded_bytes(summary, _edited(cells), store)
        settings.say(f"whole_notebook: {name}: jupyter-cache ({r + 1}/{rounds})")
        jc = work / "jc"
        jc.mkdir()
        write_notebook(cells, jc / "notebook.ipynb")
        out["jcache"].append(_jupyter_cache(jc / "notebook.ipynb", jc / "cache", cells))
    return out


def run(settings: Settings, names: Sequence[str] = NOTEBOOKS) -> list[Row]:
    import sys

    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.notebooks.transparency import corpus

    books = {b.id: b for b in corpus.notebooks()}
    folder = settings.directory / "whole-notebook"
    rounds = max(1, min(settings.repeat, 3))
    rows: list[Row] = []
    try:
        with environ(
            NBCACHE_SECRET=BENCH_SECRET,
            NBCACHE_DIR=str(folder / "unused"),
            NBCACHE_MAX_SIZE="10GB",
            NBCACHE_TIER=None,
            NBCACHE_LOCK_URL=None,
            NBCACHE_AUTO=None,
            MPLBACKEND=None,
        ):
            for name in names:
                book = books[name]
                got = _one(name, book.cells, folder / name.replace("/", "-"), rounds, settings)
                rows += _rows(name, len(book.cells), got)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _rows(name: str, n: int, got: Mapping[str, Any]) -> list[Row]:
    group = f"{name} ({n} cells)"
    plain, edited, jcache = min(got["plain"]), min(got["edited"]), min(got["jcache"])
    floor = min(got["floor"])
    o = got["outcomes"]
    what = f"{o['restored']} restored, {o['ran']} ran, {o['uncached']} uncached"
    loaded = got["loaded"]
    return [
        Row(group, KERNEL, tuple(got["kernel"])),
        Row(group, PLAIN, tuple(got["plain"])),
        Row(group, FIRST, tuple(got["first"])),
        Row(group, EDITED, tuple(got["edited"]), versus=what),
        Row(group, JCACHE, tuple(got["jcache"])),
        Row(group, VS_PLAIN, share=edited / plain, target=TARGET, versus="best / best"),
        Row(group, VS_JCACHE, share=edited / jcache, versus="best / best"),
        Row(group, FLOOR, tuple(got["floor"])),
        Row(
            group,
            BEYOND,
            share=max(0.0, edited - floor) / max(plain - floor, 1e-9),
            target=TARGET,
            versus="(edited − floor) / (plain − floor)",
        ),
        Row(group, BODIES, tuple(got["bodies"]), versus="the rest: kernel, restores, imports"),
        Row(
            group,
            LOADED,
            status=(
                f"{len(loaded)} ({', '.join(loaded) or 'none'}), "
                f"from {format_size(got['loaded_bytes'])} of entries"
            ),
        ),
    ]


GROUP = Group(
    "whole_notebook",
    "whole notebooks: nbcache run after an edit of the last cell",
    lambda settings: run(settings),
    notes=(
        f"Notebooks of the transparency corpus ({', '.join(NOTEBOOKS)}; code cells only, "
        "taken from the PyPI sdists named in tests/notebooks/transparency/corpus.json), "
        "each written as a fresh .ipynb in the benchmark's folder. Times are wall seconds of "
        "the whole run in this process, kernel start and shutdown included; at most 3 rounds.",
        "Plain: nbclient's NotebookClient with the python3 kernel (what `jupyter execute` "
        "does). nbcache: nbcache.notebooks.runner.run_notebook (what `nbcache run` does), "
        "first on an empty store, then after `_nbcache_edit = 1` was put before the last "
        "code cell's code.",
        "jupyter-cache: get_cache on a new folder, add_nb_to_project, the local-serial "
        "executor's run_and_cache (`jcache project execute`), the same edit, run_and_cache "
        "again: the time of the second execution (it re-executes the whole notebook).",
        "Bodies: the seconds the cells that executed in the edited run took (the edited cell, "
        "and cells kept out of the store because they are cheap); the rest of the edited run "
        "is the kernel's start and stop, re-importing the modules of restored import cells, "
        "replaying outputs and nbcache's own work.",
        "Values loaded: the names the edited run loaded from the store before a cell ran, "
        "and the sizes of the entries they were loaded from.",
        "Floor: a plain run of only the notebook's line magics and the import statements of "
        "every cell, which every run does whatever is cached (restoring a cell imports the "
        "modules, classes and functions it bound, to unpickle them). "
        "Beyond the floor: the share of the time a plain run spends past it that the "
        "edited run still spends.",
    ),
)


def _main() -> None:  # pragma: no cover - a quick look without the report
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(size=0, repeat=1, directory=Path(tmp), progress=print)
        for row in run(settings, NOTEBOOKS[:1]):
            print(json.dumps({"name": row.name, "times": row.times, "share": row.share}))


if __name__ == "__main__":
    _main()
