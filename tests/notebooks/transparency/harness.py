"""The transparency run: every corpus notebook four ways, each in a fresh kernel.

1. ``plain``: the notebook as it is;
2. ``plain2``: the same again, so that cells whose output varies by itself
   (unseeded randomness, clocks) are known and left out of the comparison;
3. ``miss``: ``%load_ext nbcache`` first, then every code cell with
   ``%%cache`` prepended (cells that start with another cell magic, and empty
   cells, stay as they are), on an empty store;
4. ``hit``: the same wrapped notebook again, in a fresh kernel on that store,
   in the same working folder: a kernel restart.

Each cell's outputs are normalised (memory addresses, timings, the kernel's
cell file names, the run's own folders, widget model ids, execution counts,
nbcache's own status lines and messages) and compared with the plain run's.
Images are compared byte for byte: matplotlib's PNGs are deterministic for one
backend and one version.

This module imports neither nbcache nor anything of the kernels' side: the
kernels load nbcache themselves, as a user's would.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nbcache.notebooks.cellids import forget_exit_hook
from nbcache.notebooks.kernels import kernel_manager_class

from . import corpus

RUNS = ("plain", "plain2", "miss", "hit")
WRAPPED = ("miss", "hit")
CELL_TIMEOUT = int(os.environ.get("NBCACHE_TRANSPARENCY_CELL_TIMEOUT", "60"))
HANG_FLOOR = float(os.environ.get("NBCACHE_TRANSPARENCY_HANG_FLOOR", "10"))
HANG_FACTOR = float(os.environ.get("NBCACHE_TRANSPARENCY_HANG_FACTOR", "5"))
WORKERS = int(os.environ.get("NBCACHE_TRANSPARENCY_WORKERS", "2"))
DEFAULT_REPORT = corpus.HERE / "report"
SETUP = {"plain": "pass", "plain2": "pass", "miss": "%load_ext nbcache", "hit": "%load_ext nbcache"}

# Kinds of difference a cell can show in a wrapped run (each prefixed with the run:
# "miss:stdout"), plus "hit:not-restored", "<run>:nbcache-traceback", "<run>:hang",
# "<run>:dead" and "<run>:not-run".
CATEGORIES = ("error", "stdout", "stderr", "result", "display", "image", "order")


# -- running -----------------------------------------------------------------------


def wrap(source: str) -> str:
    """A cell as the wrapped runs run it."""
    body = source.lstrip("\r\n")
    if not body.strip() or body.startswith("%%"):
        return source
    return "%%cache\n" + source


SECRET = "nbcache-test-secret-of-32-bytes-0k"


def kernel_env(root: Path, store: Path) -> dict[str, str]:
    """A kernel's whole environment, as ``tests.notebooks.nbrun.kernel_env`` makes it: this
    process's minus nbcache and pytest settings, plus a store, a secret, and config and
    IPython folders under ``root``.  (A copy, because nbrun imports nbcache, and the harness
    must report an nbcache that does not import rather than fail to start.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBCACHE_", "PYTEST_"))}
    env.update(
        NBCACHE_DIR=str(store),
        NBCACHE_SECRET=SECRET,
        XDG_CONFIG_HOME=str(root / "config"),
        IPYTHONDIR=str(root / "ipython"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _env(root: Path, store: Path, shared: Path, nbcache: str | None = None) -> dict[str, str]:
    env = kernel_env(root, store)
    if nbcache:
        # another checkout of nbcache (its parent folder) ahead of the installed one
        env["PYTHONPATH"] = os.pathsep.join(p for p in (nbcache, env.get("PYTHONPATH")) if p)
    # matplotlib's font cache is built once per harness run, not once per kernel.
    env["MPLCONFIGDIR"] = str(shared / "matplotlib")
    env["XDG_CACHE_HOME"] = str(shared / "xdg-cache")
    env.pop("MPLBACKEND", None)  # ipykernel's own default: the inline backend
    # two notebooks run at once on two cores: one BLAS thread each, no oversubscription
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def execute(
    cells: list[str],
    ids: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: int,
    timeouts: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Run ``cells`` as one notebook in a fresh kernel: the executed notebook (as a dict),
    the wall time, each cell's seconds, the cells that hung, and where the run stopped if
    the kernel died.

    A cell that runs longer than its timeout (``timeouts[id]``, else ``timeout``) is
    interrupted, recorded as hung, and the run goes on with the next cell.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src, id=i) for src, i in zip(cells, ids, strict=True)]
    limits = {i: max(1, round((timeouts or {}).get(i, timeout))) for i in ids}
    current: dict[str, Any] = {"index": None, "t": 0.0}
    seconds: dict[str, float] = {}

    def started(cell: Any, cell_index: int, **_: Any) -> None:
        current.update(index=cell_index, t=time.monotonic())

    def completed(cell: Any, cell_index: int, **_: Any) -> None:
        seconds[cell["id"]] = time.monotonic() - current["t"]

    manager = kernel_manager_class()  # nbcache's own: this interpreter's python3
    options: dict[str, Any] = {}
    import zmq

    if "transport_encryption" in manager.class_trait_names() and zmq.has("curve"):
        options["transport_encryption"] = "auto"
    # A kernel that never answered (it lost the race for its ports to another kernel
    # starting on the machine) is started once more: the reference run is not what
    # is tested, and a corpus of kernels two at a time meets that race now and then.
    for attempt in (1, 2):
        client = NotebookClient(
            nb,
            kernel_name="python3",
            kernel_manager_class=manager,
            timeout=timeout,
            timeout_func=lambda cell: limits.get(cell.get("id"), timeout),
            interrupt_on_timeout=True,
            error_on_timeout={"ename": "CellTimeout", "evalue": "interrupted", "traceback": []},
            allow_errors=True,
            record_timing=True,
            resources={"metadata": {"path": os.fspath(cwd)}},
            on_cell_execute=started,
            on_cell_executed=completed,
        )
        stopped: dict[str, Any] = {}
        t0 = time.monotonic()
        try:
            client.execute(env=dict(env), **options)
        except CellTimeoutError:
            stopped = {"kind": "hang", "index": current["index"]}
        except DeadKernelError as exc:
            stopped = {"kind": "dead", "index": current["index"], "detail": str(exc)[:500]}
        except Exception as exc:  # noqa: BLE001 - any other failure is reported, not raised
            stopped = {"kind": "failed", "index": current["index"], "detail": repr(exc)[:500]}
            forget_exit_hook(client)
        if attempt == 1 and stopped.get("kind") == "failed" and current["index"] is None:
            continue
        break
    wall = time.monotonic() - t0
    hung = {i: limits[i] for i, s in seconds.items() if s >= limits[i] - 0.5}
    return {
        "nb": json.loads(nbformat.writes(nb)),
        "wall": wall,
        "stopped": stopped,
        "seconds": {i: round(s, 3) for i, s in seconds.items()},
        "hung": hung,
    }


def wrapped_timeouts(plain: Mapping[str, float], plain2: Mapping[str, float]) -> dict[str, float]:
    """Each cell's timeout in the wrapped runs: ``HANG_FLOOR`` seconds plus ``HANG_FACTOR``
    times its slower plain run, at most ``CELL_TIMEOUT``: a hang costs seconds, not a
    minute per cell, and a slow cell still has room for nbcache's hashing and storing."""
    out = {}
    for cid in set(plain) | set(plain2):
        base = max(plain.get(cid, 0.0), plain2.get(cid, 0.0))
        out[cid] = min(CELL_TIMEOUT, HANG_FLOOR + HANG_FACTOR * base)
    return out


def run_notebook(
    book: dict[str, Any], workdir: str, timeout: int, nbcache: str | None = None
) -> dict[str, Any]:
    """The four runs of one notebook (in a worker process)."""
    root = Path(workdir)
    shared = root.parent / "_shared"
    ids = ["setup"] + [f"c{n}" for n in book["numbers"]]
    out: dict[str, Any] = {}
    store = root / "store"
    for run in RUNS:
        cells = [SETUP[run]] + (
            [wrap(c) for c in book["cells"]] if run in WRAPPED else list(book["cells"])
        )
        # The plain runs each get a folder of their own; the wrapped runs share one, and
        # a store: the hit run is a kernel restart.
        base = root / (run if run not in WRAPPED else "wrapped")
        cwd = base / "work"
        cwd.mkdir(parents=True, exist_ok=True)
        env = _env(base, store if run in WRAPPED else base / "unused-store", shared, nbcache)
        limits = None
        if run in WRAPPED:
            limits = wrapped_timeouts(out["plain"]["seconds"], out["plain2"]["seconds"])
        out[run] = execute(cells, ids, cwd=cwd, env=env, timeout=timeout, timeouts=limits)
    return out


# -- normalising -------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SUBS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"0x[0-9a-fA-F]{4,}"), "0x?"),
    # the kernel's file for each cell: /tmp/ipykernel_123/456.py:7 (line moves by %%cache)
    (re.compile(r"/tmp/ipykernel_\d+/\d+\.py(:\d+)?"), "<cell>"),
    (re.compile(r"<ipython-input-\d+-[0-9a-f]+>"), "<cell>"),
    (re.compile(r"(Cell In\[)\d+\], line \d+"), r"\1?], line ?"),
    (re.compile(r"(Wall time|CPU times|Elapsed|Time taken):[^\n<]*"), r"\1: <time>"),
    # scikit-learn's gallery prints "Elapsed time to compute the importances: 0.005 seconds"
    (re.compile(r"(?i)(elapsed time[^:\n]*):\s*[\d.]+\s*(seconds|s)\b"), r"\1: <time>"),
    (re.compile(r"[\d.]+ ?(ns|µs|us|ms|s) ± [\d.]+ ?(ns|µs|us|ms|s) per loop[^\n<]*"), "<timeit>"),
    # statsmodels' summaries carry the date and time they were made
    (
        re.compile(
            r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
            r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}"
        ),
        "<date>",
    ),
    (re.compile(r"(Time:(?:\s|</th>|<td>)*)\d\d:\d\d:\d\d"), r"\1<hh:mm:ss>"),
]
# nbcache's own words in a stream: its warnings (file:line: UserWarning: nbcache: ...,
# and the source line after it) and lines it printed.
_NBCACHE_WARNING = re.compile(r"^.*Warning: nbcache: .*\n(?:[ \t]+.*\n)?", re.MULTILINE)
_NBCACHE_LINE = re.compile(r"^nbcache: .*(\n|$)", re.MULTILINE)
_TRACEBACK_IN_STREAM = re.compile(r"Traceback \(most recent call last\)")
WIDGET = "application/vnd.jupyter.widget-view+json"


def is_status(output: Mapping[str, Any]) -> bool:
    """An nbcache status output: marked in its metadata, or a display whose text is one."""
    if output.get("output_type") != "display_data":
        return False
    if "nbcache" in (output.get("metadata") or {}):
        return True
    text = (output.get("data") or {}).get("text/plain", "")
    return isinstance(text, str) and text.startswith("nbcache:")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def normal_text(text: str, roots: Iterable[str] = ()) -> str:
    text = _ANSI.sub("", text)
    for root in roots:
        text = text.replace(root, "<root>")
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    return text


def _merged(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stream outputs between two other outputs merged into one stdout and one stderr, in
    that order: the kernel splits a stream anywhere, and it flushes stdout and stderr each
    on its own schedule, so their interleaving within such a run is not the cell's own."""
    merged: list[dict[str, Any]] = []
    streams: dict[str, str] = {}

    def close() -> None:
        for name in sorted(streams, key=lambda n: (n != "stdout", n)):
            merged.append({"output_type": "stream", "name": name, "text": streams[name]})
        streams.clear()

    for out in outputs:
        if out["output_type"] == "stream":
            streams[out["name"]] = streams.get(out["name"], "") + _text(out["text"])
        else:
            close()
            merged.append(out)
    close()
    return merged


def analyse_cell(outputs: list[dict[str, Any]], roots: Iterable[str]) -> dict[str, Any]:
    """A cell's outputs normalised, with nbcache's status lines, messages and tracebacks
    taken out (each listed on its own)."""
    roots = list(roots)
    status: list[str] = []
    messages: list[str] = []
    tracebacks: list[str] = []
    kept: list[dict[str, Any]] = []
    for out in outputs:
        if is_status(out):
            status.append(_text(out.get("data", {}).get("text/plain", "")))
            continue
        kept.append(out)
    normal: list[Any] = []
    for out in _merged(kept):
        kind = out["output_type"]
        if kind == "stream":
            text = _ANSI.sub("", _text(out["text"]))
            if _TRACEBACK_IN_STREAM.search(text) and re.search(r"nbcache[/.]", text):
                tracebacks.append(text[-3000:])
            for pattern in (_NBCACHE_WARNING, _NBCACHE_LINE):
                messages += [m.group(0).strip() for m in pattern.finditer(text)]
                text = pattern.sub("", text)
            text = normal_text(text, roots)
            if text:
                normal.append(("stream", out["name"], text))
        elif kind in ("display_data", "execute_result"):
            data = {}
            for mime, value in (out.get("data") or {}).items():
                if mime == WIDGET:
                    data[mime] = "<widget>"
                elif mime.startswith("image/") and mime != "image/svg+xml":
                    data[mime] = _text(value).strip()
                elif isinstance(value, (dict, list)) and mime.endswith("json"):
                    data[mime] = normal_text(json.dumps(value, sort_keys=True), roots)
                else:
                    data[mime] = normal_text(_text(value), roots)
            meta = {k: v for k, v in (out.get("metadata") or {}).items() if k != "nbcache"}
            normal.append((kind, data, json.dumps(meta, sort_keys=True)))
        elif kind == "error":
            tb = _ANSI.sub("", "\n".join(out.get("traceback") or []))
            if re.search(r"nbcache[/.]", tb) or out.get("ename", "").startswith("nbcache"):
                tracebacks.append(tb[-3000:])
            normal.append(("error", out.get("ename"), normal_text(out.get("evalue", ""), roots)))
    return {"normal": normal, "status": status, "messages": messages, "tracebacks": tracebacks}


def _select(normal: list[Any], kind: str) -> Any:
    if kind in ("stdout", "stderr"):
        return "".join(o[2] for o in normal if o[0] == "stream" and o[1] == kind)
    if kind == "error":
        return [o[1:] for o in normal if o[0] == "error"]
    if kind == "result":
        return [
            {m: v for m, v in o[1].items() if not m.startswith("image/")}
            for o in normal
            if o[0] == "execute_result"
        ]
    if kind == "display":
        return [
            ({m: v for m, v in o[1].items() if not m.startswith("image/")}, o[2])
            for o in normal
            if o[0] == "display_data"
        ]
    if kind == "image":
        return [
            {m: v for m, v in o[1].items() if m.startswith("image/")}
            for o in normal
            if o[0] in ("display_data", "execute_result")
            and any(m.startswith("image/") for m in o[1])
        ]
    raise ValueError(kind)


def differences(reference: list[Any], other: list[Any]) -> list[str]:
    """The kinds of output in which ``other`` differs from ``reference`` (none if equal)."""
    if reference == other:
        return []
    kinds = [k for k in CATEGORIES[:-1] if _select(reference, k) != _select(other, k)]
    return kinds or ["order"]


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = re.sub(r"[A-Za-z0-9+/=\n]{200,}", lambda m: f"<{len(m.group(0))} chars>", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(reference: list[Any], other: list[Any], kind: str) -> str:
    """A one-line picture of a difference, for the report."""
    if kind == "order":
        return f"same outputs, other order: {[o[0] for o in reference]} vs {[o[0] for o in other]}"
    a, b = _select(reference, kind), _select(other, kind)
    if kind in ("stdout", "stderr"):
        diff = [
            line
            for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if not line.startswith(("---", "+++", "@@"))
        ]
        return _short(" | ".join(diff[:6]) or f"{a!r} vs {b!r}")
    if kind == "image":
        return f"{len(a)} image(s) vs {len(b)}" + ("" if len(a) != len(b) else " (bytes differ)")
    return f"plain {_short(a, 200)} vs {_short(b, 200)}"


# -- the whole run -------------------------------------------------------------------


def _issue(book: corpus.Notebook, number: int, kind: str, detail: str) -> dict[str, Any]:
    return {"notebook": book.id, "cell": number, "kind": kind, "detail": detail}


def analyse(book: corpus.Notebook, runs: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Per cell: deterministic, differences of each wrapped run, restored on the hit run,
    nbcache's messages and tracebacks; the issues found, and the corpus's own problems
    (a plain run that hung or stopped)."""
    roots = [str(workdir)]
    by_run = {run: {c["id"]: c for c in runs[run]["nb"]["cells"]} for run in RUNS}
    stop_at = {}
    for run in RUNS:
        stopped = runs[run]["stopped"]
        if stopped:
            # index in the run's notebook (the setup cell is 0); None: no cell ever ran
            stop_at[run] = stopped["index"] if stopped.get("index") is not None else 0
    cells = []
    issues = []
    problems = []
    for run in ("plain", "plain2"):
        if runs[run]["stopped"] or runs[run]["hung"]:
            problems.append(
                f"{book.id}: the {run} run {runs[run]['stopped'] or ''} hung in "
                f"{sorted(runs[run]['hung'])}"
            )
    for run in WRAPPED:  # nbcache's own setup cell must be clean
        setup = analyse_cell(by_run[run]["setup"]["outputs"], roots)
        if setup["normal"] or setup["tracebacks"] or "setup" in runs[run]["hung"]:
            issues.append(_issue(book, -1, f"{run}:setup", _short(setup["normal"], 600)))
    for pos, (number, source) in enumerate(zip(book.numbers, book.cells, strict=True), start=1):
        cid = f"c{number}"
        seen = {run: analyse_cell(by_run[run][cid].get("outputs", []), roots) for run in RUNS}
        state = {}
        for run in RUNS:
            if run in stop_at and pos == stop_at[run]:
                state[run] = runs[run]["stopped"]["kind"]
            elif run in stop_at and pos > stop_at[run]:
                state[run] = "not-run"
            elif cid in runs[run]["hung"]:
                state[run] = "hang"
            else:
                state[run] = "ran"
        wrapped = wrap(source) != source
        cell: dict[str, Any] = {
            "cell": number,
            "wrapped": wrapped,
            "first_line": source.strip().splitlines()[0][:80] if source.strip() else "",
            "seconds": {run: runs[run]["seconds"].get(cid) for run in RUNS},
            "state": {run: st for run, st in state.items() if st != "ran"},
            "status": {run: seen[run]["status"] for run in WRAPPED},
            "messages": {run: seen[run]["messages"] for run in WRAPPED if seen[run]["messages"]},
            "diffs": {},
        }
        plain_ok = state["plain"] == state["plain2"] == "ran"
        deterministic = plain_ok and seen["plain"]["normal"] == seen["plain2"]["normal"]
        plain_error = any(o[0] == "error" for o in seen["plain"]["normal"])
        cell["deterministic"] = deterministic
        cell["plain_error"] = plain_error
        for run in WRAPPED:
            if state[run] == "not-run":
                continue
            if state[run] != "ran":
                limit = runs[run]["hung"].get(cid)
                why = f" (no reply in {limit} s)" if limit else ""
                issues.append(
                    _issue(book, number, f"{run}:{state[run]}", _short(source, 120) + why)
                )
                continue
            for tb in seen[run]["tracebacks"]:
                issues.append(
                    _issue(book, number, f"{run}:nbcache-traceback", _short(tb[-600:], 600))
                )
            if not deterministic:
                continue
            kinds = differences(seen["plain"]["normal"], seen[run]["normal"])
            if kinds and not differences(seen["plain2"]["normal"], seen[run]["normal"]):
                kinds = []
            if kinds:
                cell["diffs"][run] = kinds
                for kind in kinds:
                    detail = describe(seen["plain"]["normal"], seen[run]["normal"], kind)
                    issues.append(_issue(book, number, f"{run}:{kind}", detail))
        # A cell nbcache runs uncached on purpose (it shows no status line and says nothing,
        # on both runs: e.g. a cell of line magics only) cannot restore; it is counted apart.
        uncached = wrapped and not any(
            seen[run]["status"] or seen[run]["messages"] for run in WRAPPED
        )
        cell["uncached"] = uncached and state["miss"] == state["hit"] == "ran"
        restorable = (
            deterministic
            and wrapped
            and not plain_error
            and state["miss"] == "ran"
            and not cell["uncached"]
        )
        restored = any(s.startswith("nbcache: restored") for s in seen["hit"]["status"])
        cell["restorable"] = restorable
        cell["restored"] = restored
        if restorable and not restored and state["hit"] == "ran":
            why = seen["hit"]["status"] or seen["hit"]["messages"] or ["no status line"]
            miss = seen["miss"]["status"] + seen["miss"]["messages"]
            detail = f"hit: {' / '.join(why)}; miss: {' / '.join(miss)}"
            issues.append(_issue(book, number, "hit:not-restored", _short(detail, 400)))
        cells.append(cell)
    return {
        "id": book.id,
        "package": book.package,
        "version": book.version,
        "path": book.path,
        "url": book.url,
        "licence": book.licence,
        "edits": book.edits,
        "wall": {run: round(runs[run]["wall"], 2) for run in RUNS},
        "stopped": {run: runs[run]["stopped"] for run in RUNS if runs[run]["stopped"]},
        "cells": cells,
        "issues": issues,
        "problems": problems,
    }


def _key(issue: Mapping[str, Any]) -> tuple[str, int, str]:
    return (issue["notebook"], int(issue["cell"]), issue["kind"])


def compare_known(
    books: list[corpus.Notebook], issues: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Issues not in the manifest's known list, and known ones that no longer occur."""
    known = {}
    for book in books:
        for k in book.known:
            entry = {"notebook": book.id, **k}
            known[_key(entry)] = entry
    seen = {_key(i) for i in issues}
    new = [i for i in issues if _key(i) not in known]
    gone = [k for key, k in known.items() if key not in seen]
    return new, gone


def run_corpus(
    books: list[corpus.Notebook],
    *,
    workers: int = WORKERS,
    timeout: int = CELL_TIMEOUT,
    workdir: Path | None = None,
    log: Callable[[str], None] | None = None,
    keep_notebooks: Path | None = None,
    nbcache: str | None = None,
) -> dict[str, Any]:
    """Run every notebook four ways (``workers`` notebooks at a time): the report.

    ``nbcache``: a folder holding another ``nbcache`` package for the kernels to import
    instead of the installed one (default: $NBCACHE_TRANSPARENCY_NBCACHE, if set).
    """
    nbcache = nbcache or os.environ.get("NBCACHE_TRANSPARENCY_NBCACHE") or None
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    own_tmp = workdir is None
    base = Path(tempfile.mkdtemp(prefix="nbcache-transparency-")) if workdir is None else workdir
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if keep_notebooks is not None and keep_notebooks.exists():
        for old in keep_notebooks.glob("*.ipynb"):
            old.unlink()
    t0 = time.monotonic()
    context = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {}
            for i, book in enumerate(books):
                folder = base / f"{i:02d}-{book.id.replace('/', '-')}"
                futures[pool.submit(run_notebook, asdict(book), str(folder), timeout, nbcache)] = (
                    book,
                    folder,
                )
            for future in concurrent.futures.as_completed(futures):
                book, folder = futures[future]
                runs = future.result()
                results[book.id] = analyse(book, runs, folder)
                walls = " ".join(f"{r} {runs[r]['wall']:.1f}s" for r in RUNS)
                log(f"transparency: {book.id}: {walls}, {len(results[book.id]['issues'])} issues")
                if keep_notebooks is not None:
                    keep_notebooks.mkdir(parents=True, exist_ok=True)
                    for run in RUNS:
                        name = f"{book.id.replace('/', '-')}.{run}.ipynb"
                        (keep_notebooks / name).write_text(json.dumps(runs[run]["nb"], indent=1))
    finally:
        if own_tmp:
            shutil.rmtree(base, ignore_errors=True)
    harness_wall = time.monotonic() - t0
    ordered = [results[b.id] for b in books]
    return summarise(books, ordered, harness_wall, workers)


def summarise(
    books: list[corpus.Notebook], notebooks: list[dict[str, Any]], harness_wall: float, workers: int
) -> dict[str, Any]:
    issues = [i for nb in notebooks for i in nb["issues"]]
    cells = [c for nb in notebooks for c in nb["cells"]]
    new, gone = compare_known(books, issues)
    diff_cells = {run: sum(1 for c in cells if c["diffs"].get(run)) for run in WRAPPED}
    figures = {
        "notebooks": len(notebooks),
        "cells": len(cells),
        "wrapped": sum(c["wrapped"] for c in cells),
        "deterministic": sum(c["deterministic"] for c in cells),
        "restorable": sum(c["restorable"] for c in cells),
        "uncached": sum(c["uncached"] for c in cells),
        "restored": sum(c["restored"] and c["restorable"] for c in cells),
        "cells_with_differences": diff_cells,
        "differences": sum(1 for i in issues if i["kind"].split(":")[1] in CATEGORIES),
        "not_restored": sum(1 for i in issues if i["kind"] == "hit:not-restored"),
        "nbcache_tracebacks": sum(1 for i in issues if i["kind"].endswith(":nbcache-traceback")),
        "hangs": sum(1 for i in issues if i["kind"].endswith((":hang", ":dead", ":failed"))),
        "setup_failures": sum(1 for i in issues if i["kind"].endswith(":setup")),
        "issues": len(issues),
        "new_issues": len(new),
        "known_gone": len(gone),
        "wall_s": {run: round(sum(nb["wall"][run] for nb in notebooks), 1) for run in RUNS},
        "harness_wall_s": round(harness_wall, 1),
        "workers": workers,
    }
    by_kind: dict[str, int] = {}
    for i in issues:
        by_kind[i["kind"]] = by_kind.get(i["kind"], 0) + 1
    figures["issues_by_kind"] = dict(sorted(by_kind.items()))
    problems = [p for nb in notebooks for p in nb["problems"]]
    figures["corpus_problems"] = len(problems)
    return {
        "figures": figures,
        "notebooks": notebooks,
        "issues": issues,
        "new": new,
        "gone": gone,
        "problems": problems,
    }


# -- the report ------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    f = report["figures"]
    w = f["wall_s"]
    lines = [
        "# nbcache transparency run",
        "",
        f"- notebooks: {f['notebooks']}, code cells: {f['cells']} "
        f"({f['wrapped']} wrapped in `%%cache`, {f['deterministic']} deterministic)",
        f"- restored on the third run: {f['restored']} of {f['restorable']} restorable "
        f"({f['uncached']} more cells ran uncached: no status line on either wrapped run)",
        f"- cells whose output differs from the plain run: {f['cells_with_differences']['miss']} "
        f"on the miss run, {f['cells_with_differences']['hit']} on the hit run "
        f"({f['differences']} differences by kind)",
        f"- nbcache tracebacks: {f['nbcache_tracebacks']}; hangs or dead kernels: {f['hangs']}",
        f"- wall time, summed over notebooks: plain {w['plain']} s (again {w['plain2']} s), "
        f"miss {w['miss']} s, hit {w['hit']} s; whole harness {f['harness_wall_s']} s "
        f"with {f['workers']} workers",
        f"- issues: {f['issues']} ({f['new_issues']} not in the known list, "
        f"{f['known_gone']} known ones gone)",
        "",
        "## Notebooks",
        "",
        "| notebook | source | cells | restored | diffs miss/hit | tracebacks "
        "| plain s | miss s | hit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for nb in report["notebooks"]:
        cs = nb["cells"]
        restorable = sum(c["restorable"] for c in cs)
        restored = sum(c["restored"] and c["restorable"] for c in cs)
        dm = sum(1 for c in cs if "miss" in c["diffs"])
        dh = sum(1 for c in cs if "hit" in c["diffs"])
        tb = sum(1 for i in nb["issues"] if i["kind"].endswith("nbcache-traceback"))
        lines.append(
            f"| {nb['id']} | {nb['package']} {nb['version']}: `{nb['path']}` | {len(cs)} | "
            f"{restored}/{restorable} | {dm}/{dh} | {tb} | {nb['wall']['plain']} | "
            f"{nb['wall']['miss']} | {nb['wall']['hit']} |"
        )
    lines += ["", "## Issues by kind", ""]
    for kind, n in f["issues_by_kind"].items():
        lines.append(f"- `{kind}`: {n}")
    lines += ["", "## Every issue", "", "| notebook | cell | kind | detail |", "|---|---|---|---|"]
    for i in report["issues"]:
        detail = i["detail"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {i['notebook']} | {i['cell']} | `{i['kind']}` | {detail} |")
    if report["gone"]:
        lines += ["", "## Known issues that no longer occur (remove them from corpus.json)", ""]
        for k in report["gone"]:
            lines.append(f"- {k['notebook']} cell {k['cell']} `{k['kind']}`: {k.get('reason', '')}")
    return "\n".join(lines) + "\n"


def terminal_lines(pytestconfig: Any) -> Callable[[str], None]:
    """A ``say(line)`` that writes progress and figures on pytest's terminal, also when the
    test passes and its output is captured."""
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        if terminal is None:
            return
        if capture is None:
            terminal.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)

    return say


def report_dir() -> Path:
    return Path(os.environ.get("NBCACHE_TRANSPARENCY_REPORT") or DEFAULT_REPORT)


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    js = folder / "transparency.json"
    md = folder / "transparency.md"
    js.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    md.write_text(markdown(report), encoding="utf-8")
    return js, md


def summary_lines(report: dict[str, Any]) -> list[str]:
    f = report["figures"]
    w = f["wall_s"]
    return [
        f"transparency: {f['notebooks']} notebooks, {f['cells']} cells, "
        f"restored {f['restored']}/{f['restorable']} on the third run, "
        f"differences {f['cells_with_differences']['miss']} (miss) / "
        f"{f['cells_with_differences']['hit']} (hit) cells, "
        f"nbcache tracebacks {f['nbcache_tracebacks']}, hangs {f['hangs']}",
        f"transparency: wall plain {w['plain']} s, miss {w['miss']} s, hit {w['hit']} s "
        f"(plain again {w['plain2']} s); harness {f['harness_wall_s']} s with "
        f"{f['workers']} workers",
    ]


# -- pieces for other runs over the corpus (tests/notebooks/test_whole_notebooks_corpus.py) --


def environment(
    root: Path, store: Path, shared: Path, nbcache: str | None = None
) -> dict[str, str]:
    """A kernel's environment as the four runs here give it: a store and a secret, config
    and IPython folders under ``root``, matplotlib's and XDG caches under ``shared``, one
    BLAS thread."""
    return _env(root, store, shared, nbcache)


def plain_run(
    book: corpus.Notebook | Mapping[str, Any],
    base: Path,
    shared: Path,
    timeout: int = CELL_TIMEOUT,
    ids: list[str] | None = None,
) -> dict[str, Any]:
    """One plain run of a corpus notebook (no setup cell), in ``base/work``: what
    :func:`execute` returns. Cells are named ``c<number>`` unless ``ids`` are given."""
    data = asdict(book) if isinstance(book, corpus.Notebook) else book
    cwd = base / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    env = _env(base, base / "unused-store", shared)
    names = ids if ids is not None else [f"c{n}" for n in data["numbers"]]
    return execute(list(data["cells"]), names, cwd=cwd, env=env, timeout=timeout)


def cell_differences(
    plain: list[Any], plain2: list[Any], other: list[Any], deterministic: bool
) -> list[str]:
    """The kinds of difference of ``other`` (normalised outputs, see :func:`analyse_cell`)
    from the plain run, as :func:`analyse` counts them: none for a cell whose two plain runs
    differ, and none when ``other`` equals the second plain run."""
    if not deterministic:
        return []
    kinds = differences(plain, other)
    if kinds and not differences(plain2, other):
        return []
    return kinds
