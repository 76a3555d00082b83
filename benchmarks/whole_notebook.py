"""Whole notebooks: ``nbcache run`` on an unchanged notebook and after its last cell
changed, against ``jupyter execute`` and jupyter-cache, on small real notebooks of the
transparency corpus and the project's own benchmark notebook.

For each notebook (:data:`NOTEBOOKS`), every round, in this process:

1. an empty notebook, run plain: one kernel's start and stop;
2. a plain run: nbclient's ``NotebookClient`` with the ``python3`` kernel, as
   ``jupyter execute`` runs it, each cell's time recorded (``record_timing``);
3. ``nbcache run`` (``nbcache.notebooks.runner.run_notebook``) on an empty store,
   again unchanged, then after the last code cell was edited (a cheap edit:
   ``_nbcache_edit = 1`` put before its code);
4. jupyter-cache: the notebook added to a project of a new cache, executed with its
   ``local-serial`` executor (``jcache project execute``), executed again unchanged
   and its outputs merged into a notebook written out (``jcache notebook merge``),
   then the same edit and executed again;
5. what the edited run cannot avoid, run plain: a kernel that imports what the
   cells the edited run executed need (the imports of earlier cells binding names
   they read, the modules of the classes of the values they read, which loading
   those values imports: :func:`value_modules`, and the cells' own imports, which a
   kernel that ran nothing before them makes from scratch), plus the cells' plain
   time less what their own imports took after the cells before them had run.

Every side's kernel is stopped the same way: nbcache's kernel manager (a kernel
that does not exit on request is stopped after 1 s, where jupyter_client waits
5 s by default) runs the plain side and jupyter-cache's executions too.

Targets: an unchanged notebook in at most 1.2 times jupyter-cache's time; an
edited one in at most the plain time of the cells it executed, plus one kernel's
start and the imports they need, plus 10 %.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nbcache.units import format_size

from .common import BENCH_SECRET, Group, Row, Settings, at_most, nbcache_environ, write_notebook

__all__ = ["GROUP", "NOTEBOOKS", "run"]

OWN = "benchmarks/notebook_overhead"  # the project's own: thirty everyday small cells
# Small and quick (2-6 s plain): a slow model fit among cheap plotting cells, a
# statsmodels tutorial of many small fits, a seaborn tutorial of many small figures, a
# formula fit of four cells, a cross-validated prediction, and thirty everyday cells.
NOTEBOOKS: tuple[str, ...] = (
    "scikit-learn/plot_forest_importances",
    "statsmodels/glm",
    "seaborn/aesthetics",
    "statsmodels/glm_formula",
    "scikit-learn/plot_cv_predict",
    OWN,
)
EDIT = "_nbcache_edit = 1\n"
TIMEOUT = 300

KERNEL = "kernel start and stop (an empty notebook)"
PLAIN = "plain run (jupyter execute)"
FIRST = "nbcache run, first (empty store)"
UNCHANGED = "nbcache run, unchanged"
JCACHE_UNCHANGED = "jupyter-cache, unchanged: execute and merge"
VS_JCACHE_UNCHANGED = "unchanged run / jupyter-cache"
EDITED = "nbcache run after editing the last cell"
JCACHE = "jupyter-cache re-execution after the edit"
VS_PLAIN = "edited run / plain run"
VS_JCACHE = "edited run / jupyter-cache"
NEEDED = "must execute: kernel + imports needed + cells' plain time"
VS_NEEDED = "edited run / what it must execute"
BODIES = "edited run: bodies of the cells that ran"
LOADED = "values loaded by the edited run"
MODULES = "must execute: modules of the values those cells read"

UNCHANGED_TARGET = at_most(1.2)
EDITED_TARGET = at_most(1.1)


def _edited(cells: Sequence[str]) -> list[str]:
    last = max(i for i, c in enumerate(cells) if c.strip())
    out = list(cells)
    out[last] = EDIT + out[last]
    return out


def _names(source: str) -> set[str]:
    """Every name ``source`` mentions (more than it reads, never less); none when it is
    not Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _imports(source: str) -> list[tuple[str, set[str]]]:
    """The top-level import statements of ``source``, each with the names it binds."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = {(a.asname or a.name).split(".")[0] for a in node.names}
            out.append((ast.unparse(node), bound))
    return out


def needed_imports(cells: Sequence[str], executed: Sequence[int]) -> list[str]:
    """The import statements of the cells before each executed cell that bind a name it
    mentions: what a kernel must import for those cells to run (their own imports are in
    their time)."""
    out: list[str] = []
    for index in executed:
        wanted = _names(cells[index])
        for before in cells[:index]:
            for statement, bound in _imports(before):
                if bound & wanted and statement not in out:
                    out.append(statement)
    return out


# Run after the cells before the first that executes: the modules of the classes of the
# values the executed cells read (a level into lists, tuples and dicts), which loading
# those values imports (a fitted model's results class, a DataFrame's).
PROBE = """\
def _nbcache_probe(names, depth_limit=2):
    import json, types
    found, seen = [], set()
    def add(value, depth):
        if id(value) in seen or depth > depth_limit or isinstance(value, types.ModuleType):
            return
        seen.add(id(value))
        module = getattr(type(value), "__module__", None) or "builtins"
        if module not in ("builtins", "__main__") and module not in found:
            found.append(module)
        if type(value) in (list, tuple, set, frozenset):
            for item in list(value)[:100]:
                add(item, depth + 1)
        elif type(value) is dict:
            for key, item in list(value.items())[:100]:
                add(key, depth + 1)
                add(item, depth + 1)
    for name in names:
        if name in globals():
            add(globals()[name], 0)
    print(json.dumps(found))
_nbcache_probe({names!r})
"""


def own_imports(cells: Sequence[str], executed: Sequence[int]) -> list[str]:
    """The top-level import statements of the ``executed`` cells themselves."""
    out: list[str] = []
    for index in executed:
        for statement, _ in _imports(cells[index]):
            if statement not in out:
                out.append(statement)
    return out


def value_modules(
    cells: Sequence[str], executed: Sequence[int], work: Path
) -> tuple[list[str], float]:
    """The modules a plain kernel imports to hold the values the ``executed`` cells read
    from the cells before them (a class's module: unpickling the value imports it),
    found by running the cells before the last of them plain with a probe after; and
    what the executed cells' own imports took there, after those cells (the part of
    the cells' plain time a kernel that ran nothing before pays in full instead)."""
    import nbformat

    if not executed:
        return [], 0.0
    names = sorted(set().union(*(_names(cells[i]) for i in executed)))
    # before the last of them (the edited cell; those before it mostly always run, a
    # `%matplotlib` cell at the top): the values are bound by then
    own = "\n".join(own_imports(cells, executed)) or "pass"
    probe = [*cells[: max(executed)], PROBE.format(names=names), own]
    write_notebook(probe, work / "probe.ipynb")
    _, nb = _plain(work / "probe.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = "".join(o.get("text", "") for o in code[-2].outputs if o.get("name") == "stdout")
    nbformat.write(nb, os.fspath(work / "probe.out.ipynb"))
    return list(json.loads(printed.strip().splitlines()[-1])), _cell_seconds(nb)[-1]


def _cell_seconds(nb: Any) -> list[float]:
    """Each code cell's time in a plain run, from nbclient's timing metadata."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        timing = cell.get("metadata", {}).get("execution", {})
        began, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if not (began and ended):
            out.append(0.0)
            continue
        seconds = datetime.fromisoformat(ended.replace("Z", "+00:00")) - datetime.fromisoformat(
            began.replace("Z", "+00:00")
        )
        out.append(max(0.0, seconds.total_seconds()))
    return out


def _plain(path: Path) -> tuple[float, Any]:
    """``jupyter execute PATH``, in this process, the kernel stopped as nbcache's is: the
    seconds it took and the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    from nbcache.notebooks.kernels import kernel_manager_class, launch_options

    manager = kernel_manager_class()
    start = time.perf_counter()
    nb = nbformat.read(os.fspath(path), as_version=4)
    NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        kernel_manager_class=manager,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute(**launch_options(manager))
    return time.perf_counter() - start, nb


def _nbcache(path: Path, store: Path) -> tuple[float, Any]:
    from nbcache.notebooks.runner import run_notebook

    start = time.perf_counter()
    _, summary = run_notebook(path, out=path.with_suffix(".out.ipynb"), store=str(store))
    seconds = time.perf_counter() - start
    if summary.error:
        raise RuntimeError(f"nbcache run {path.name} stopped: {summary.error}")
    return seconds, summary


@contextlib.contextmanager
def _same_kernel_stop() -> Iterator[None]:
    """jupyter-cache's executions with nbcache's kernel manager, so its kernels stop as
    the other sides' do."""
    from jupyter_cache.executors import utils

    from nbcache.notebooks.kernels import kernel_manager_class

    plain = utils.executenb
    utils.executenb = functools.partial(plain, kernel_manager_class=kernel_manager_class())
    try:
        yield
    finally:
        utils.executenb = plain


def _jupyter_cache(path: Path, folder: Path, cells: Sequence[str]) -> tuple[float, float]:
    """Add the notebook to a new jupyter-cache project and execute it; execute it again
    unchanged and merge its outputs into a notebook written out; edit its last cell and
    execute again: the seconds of the unchanged and of the edited execution."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    cache = get_cache(os.fspath(folder))
    cache.add_nb_to_project(os.fspath(path))
    executor = load_executor("local-serial", cache=cache)
    with _same_kernel_stop():
        first = executor.run_and_cache(timeout=TIMEOUT)
        if first.excepted or first.errored or not first.succeeded:
            raise RuntimeError(f"jupyter-cache could not execute {path.name}: {first.as_json()}")
        start = time.perf_counter()
        same = executor.run_and_cache(timeout=TIMEOUT)
        _, merged = cache.merge_match_into_file(os.fspath(path))
        nbformat.write(merged, os.fspath(path.with_suffix(".out.ipynb")))
        unchanged = time.perf_counter() - start
        if same.succeeded:
            raise RuntimeError(f"jupyter-cache executed the unchanged {path.name} again")
        write_notebook(_edited(cells), path)
        start = time.perf_counter()
        again = executor.run_and_cache(timeout=TIMEOUT)
        edited = time.perf_counter() - start
    if again.succeeded != first.succeeded:
        raise RuntimeError(f"jupyter-cache did not execute the edited {path.name}: {again}")
    return unchanged, edited


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
    keys = ("kernel", "plain", "first", "unchanged", "edited", "jc_unchanged", "jcache")
    out: dict[str, Any] = {k: [] for k in (*keys, "needed", "bodies")}
    for r in range(rounds):
        work = folder / f"{r}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        path = work / "notebook.ipynb"
        settings.say(f"whole_notebook: {name}: plain ({r + 1}/{rounds})")
        write_notebook([], work / "empty.ipynb")
        out["kernel"].append(_plain(work / "empty.ipynb")[0])
        write_notebook(cells, path)
        seconds, plain = _plain(path)
        out["plain"].append(seconds)
        per_cell = _cell_seconds(plain)
        settings.say(f"whole_notebook: {name}: nbcache run ({r + 1}/{rounds})")
        store = work / "store"
        out["first"].append(_nbcache(path, store)[0])
        out["unchanged"].append(_nbcache(path, store)[0])
        edited = _edited(cells)
        write_notebook(edited, path)
        seconds, summary = _nbcache(path, store)
        out["edited"].append(seconds)
        ran = [c for c in summary.cells if c.outcome not in ("restored", "not run")]
        out["bodies"].append(sum(c.seconds for c in ran))
        out["outcomes"] = {o: summary.count(o) for o in ("restored", "ran", "uncached")}
        # kept in memory and always runs executed too: the label counts them as ran
        out["outcomes"]["ran"] += summary.count("kept in memory") + summary.count("always runs")
        out["loaded"] = [n for c in summary.cells for n in c.loaded]
        out["loaded_bytes"] = _loaded_bytes(summary, edited, store)
        executed = [c.index for c in ran]
        if "modules" not in out:  # the same in every round: probed once
            out["modules"], out["own_after"] = value_modules(edited, executed, work)
        values = [f"import {module}" for module in out["modules"]]
        fresh = [*needed_imports(edited, executed), *values, *own_imports(edited, executed)]
        write_notebook(fresh, work / "needed.ipynb")
        imports = _plain(work / "needed.ipynb")[0]
        # the cells' own imports are in `imports` from scratch: not again in their time
        bodies = max(0.0, sum(per_cell[i] for i in executed) - out["own_after"])
        out["needed"].append(imports + bodies)
        settings.say(f"whole_notebook: {name}: jupyter-cache ({r + 1}/{rounds})")
        jc = work / "jc"
        jc.mkdir()
        write_notebook(cells, jc / "notebook.ipynb")
        unchanged, again = _jupyter_cache(jc / "notebook.ipynb", jc / "cache", cells)
        out["jc_unchanged"].append(unchanged)
        out["jcache"].append(again)
    return out


def _cells(name: str, books: Mapping[str, Any]) -> list[str]:
    if name == OWN:
        from .notebook_overhead import CELLS, SETUP

        return [SETUP.strip(), *CELLS]
    return list(books[name].cells)


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
        with nbcache_environ(folder / "unused", NBCACHE_AUTO=None, MPLBACKEND=None):
            for name in names:
                cells = _cells(name, books)
                got = _one(name, cells, folder / name.replace("/", "-"), rounds, settings)
                rows += _rows(name, len(cells), got)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _rows(name: str, n: int, got: Mapping[str, Any]) -> list[Row]:
    group = f"{name} ({n} cells)"
    plain, edited, jcache = min(got["plain"]), min(got["edited"]), min(got["jcache"])
    unchanged, jc_unchanged, needed = (
        min(got["unchanged"]),
        min(got["jc_unchanged"]),
        min(got["needed"]),
    )
    o = got["outcomes"]
    what = f"{o['restored']} restored, {o['ran']} ran, {o['uncached']} uncached"
    loaded = got["loaded"]
    return [
        Row(group, KERNEL, tuple(got["kernel"])),
        Row(group, PLAIN, tuple(got["plain"])),
        Row(group, FIRST, tuple(got["first"])),
        Row(group, UNCHANGED, tuple(got["unchanged"])),
        Row(group, JCACHE_UNCHANGED, tuple(got["jc_unchanged"])),
        Row(
            group,
            VS_JCACHE_UNCHANGED,
            share=unchanged / jc_unchanged,
            target=UNCHANGED_TARGET,
            versus="best / best",
        ),
        Row(group, EDITED, tuple(got["edited"]), versus=what),
        Row(group, JCACHE, tuple(got["jcache"])),
        Row(group, VS_PLAIN, share=edited / plain, versus="best / best"),
        Row(group, VS_JCACHE, share=edited / jcache, versus="best / best"),
        Row(group, NEEDED, tuple(got["needed"])),
        Row(
            group,
            VS_NEEDED,
            share=edited / needed,
            target=EDITED_TARGET,
            versus="best / best",
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
        Row(group, MODULES, status=", ".join(got.get("modules") or ()) or "none"),
    ]


GROUP = Group(
    "whole_notebook",
    "whole notebooks: nbcache run unchanged and after an edit of the last cell",
    lambda settings: run(settings),
    notes=(
        f"Notebooks of the transparency corpus ({', '.join(NOTEBOOKS[:-1])}; code cells "
        "only, taken from the PyPI sdists named in tests/notebooks/transparency/corpus.json) "
        f"and {OWN} (its setup and thirty everyday cells as a notebook), each written as a "
        "fresh .ipynb in the benchmark's folder. Times are wall seconds of the whole run in "
        "this process, kernel start and shutdown included; at most 3 rounds.",
        "Plain: nbclient's NotebookClient with the python3 kernel (what `jupyter execute` "
        "does). nbcache: nbcache.notebooks.runner.run_notebook (what `nbcache run` does), "
        "first on an empty store, again unchanged, then after `_nbcache_edit = 1` was put "
        "before the last code cell's code. Every side's kernels, jupyter-cache's included, "
        "are started and stopped by nbcache's kernel manager (a kernel that ignores the "
        "shutdown request is stopped after 1 s; jupyter_client's default waits 5 s).",
        "jupyter-cache: get_cache on a new folder, add_nb_to_project, the local-serial "
        "executor's run_and_cache (`jcache project execute`); unchanged: run_and_cache "
        "again (it executes nothing) and merge_match_into_file written out (`jcache "
        "notebook merge`); edited: the same edit, run_and_cache again (it re-executes the "
        "whole notebook).",
        "Must execute: a plain run of the import statements (of earlier cells) that bind "
        "names the cells the edited run executed mention, and of the modules of the classes "
        "of the values they read (a level into lists, tuples and dicts; unpickling such a "
        "value imports its module: a fitted model's results, a DataFrame), found once by a "
        "plain run of the cells before them with a probe after, and of those cells' own "
        "import statements (a kernel that ran nothing before them makes them from "
        "scratch): one kernel's start and stop, and those imports, plus those cells' own "
        "times in the plain run (nbclient's timing metadata) less what their own imports "
        "took in the probe run, after the cells before them. The target allows the edited "
        "run 10 % more.",
        "Bodies: the seconds the cells that executed in the edited run took; the rest of the "
        "edited run is the kernel's start and stop, re-importing the modules of restored "
        "cells, replaying outputs and nbcache's own work. Values loaded: the names the "
        "edited run loaded from the store before a cell ran, and the sizes of the entries "
        "they were loaded from.",
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
