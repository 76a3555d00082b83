"""``nbcache run``: a notebook run headless in a fresh kernel in auto mode.

The kernel loads nbcache at start (``--ext=nbcache``) with ``NBCACHE_AUTO=lazy``,
so every code cell is looked up by its key and restores from its signed header
when it hits; only the cells whose keys changed, and the cells whose keys change
because of them, execute. The executed notebook has the outputs a plain run
gives (``jupyter execute`` is the reference). Each cell is sent with its id, so
``%nbcache why`` and the plan name cells stably across edits.
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheError
from . import nbjson
from .batch import batching
from .cellids import with_cell_ids
from .celllog import first_code_line, read_log, warnings_of
from .kernels import is_python, kernel_language, kernel_manager_class, launch_options
from .reading import as_read, read_notebook
from .unchanged import Restored, Whole, since

__all__ = [
    "DRIVEN_KERNEL_ARGUMENTS",
    "KERNEL_ARGUMENTS",
    "CellOutcome",
    "RunError",
    "RunSummary",
    "absolute_store",
    "annotate",
    "cell_outcomes",
    "execute",
    "kernel_environment",
    "read_notebook",
    "require_python",
    "restored_outcomes",
    "run_notebook",
]


# What a code cell did, as ``cell.metadata["nbcache"]["outcome"]`` says it (see
# docs/whole-notebooks.md): every outcome but "restored" and "not run" executed the body.
RESTORED = "restored"
NOT_RUN = "not run"
OUTCOMES = (
    "restored",  # from the store; seconds: what computing it took, saved
    "ran",  # executed and stored
    "kept in memory",  # executed, cheaper to run again than to store
    "always runs",  # executed; what it changes no restore can bring back
    "uncached",  # executed as without nbcache (a line magic, an input with no content)
    "not cached",  # left to IPython: a cell magic of its own, a top-level await
    "failed",  # raised; the run stopped here unless the cell allows errors
    "not run",  # after the cell the run stopped at
)


@dataclass(frozen=True)
class CellOutcome:
    """What one code cell did in a run, and why."""

    index: int  # among the notebook's cells
    cell_id: str
    outcome: str  # one of OUTCOMES
    seconds: float = 0.0  # how long its body ran, or (restored) how long it ran when made
    loaded: tuple[str, ...] = ()  # values loaded from the store before it ran
    why: str = ""  # in the words of `%nbcache why`
    first_line: str = ""

    def record(self) -> dict[str, Any]:
        """The cell's ``metadata["nbcache"]``: small, JSON, stable for the same outcome."""
        out: dict[str, Any] = {"outcome": self.outcome, "why": self.why}
        if self.outcome not in (NOT_RUN, "failed", "not cached", "uncached"):  # not timed
            out["seconds"] = round(self.seconds, 4)
        return out

    def line(self) -> str:
        """One line for ``nbcache run -v``: the cell by number and first line, and why."""
        from ..units import format_duration

        took = f" ({format_duration(self.seconds)})" if "seconds" in self.record() else ""
        why = f": {self.why}" if self.why else ""
        return f"cell {self.index + 1} `{self.first_line}`: {self.outcome}{took}{why}"


@dataclass
class RunSummary:
    """A whole run: each cell's outcome, the time it took and the time restoring saved."""

    cells: list[CellOutcome] = field(default_factory=list)
    elapsed: float = 0.0
    error: str | None = None
    # nbcache's warnings, kept out of the executed notebook: (cell index, first line, text)
    warnings: list[tuple[int | None, str, str]] = field(default_factory=list)
    unchanged: float | None = None  # when the run written again with no kernel was

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cells if c.outcome == outcome)

    @property
    def saved(self) -> float:
        return sum(c.seconds for c in self.cells if c.outcome == RESTORED)

    def warning_lines(self, prefix: str = "nbcache run") -> list[str]:
        """Each warning the kernel gave, as one line naming its cell."""
        out = []
        for index, first, text in self.warnings:
            text = _IGNORE_ADVICE.sub(r"by beginning the cell with `%%cache --ignore \1`", text)
            text = text.removeprefix("nbcache: ")
            where = f"cell {index + 1} `{first}`: " if index is not None else ""
            out.append(f"{prefix}: {where}{text}")
        return out

    def verbose_lines(self) -> list[str]:
        """``nbcache run -v``: each cell that executed (restored and unreached ones are
        counted by the summary line), one line each, with why."""
        return [c.line() for c in self.cells if c.outcome not in (RESTORED, NOT_RUN)]

    def line(self) -> str:
        """The summary line: what ran, what restored, what was not reached, the time saved."""
        from ..units import format_duration

        restored, unreached = self.count(RESTORED), self.count(NOT_RUN)
        ran = len(self.cells) - restored - unreached
        cells = f"{len(self.cells)} code cell{'' if len(self.cells) == 1 else 's'}"
        parts = [cells, f"{restored} restored", f"{ran} ran"]
        if unreached:
            parts.append(f"{unreached} not run")
        text = f"nbcache run: {', '.join(parts)} in {format_duration(self.elapsed)}"
        if self.saved:
            text += f"; restoring saved {format_duration(self.saved)}"
        text += f"; {since(self.unchanged)}" if self.unchanged is not None else ""
        if self.error:
            text += f"; stopped: {self.error}"
            where = _stopped_at(self.cells)
            if where is not None:
                text += f" (cell {where.index + 1} `{where.first_line}`)"
        return text


def annotate(nb: Any, cells: list[CellOutcome]) -> None:
    """Write each code cell's record into its ``metadata["nbcache"]``; a cell with none (an
    empty one) keeps no record of an earlier run."""
    records = {c.index: c.record() for c in cells}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        metadata = cell.setdefault("metadata", {})
        if index in records:
            metadata["nbcache"] = records[index]
        else:
            metadata.pop("nbcache", None)


def _stopped_at(cells: list[CellOutcome]) -> CellOutcome | None:
    """The cell a run stopped at: the one that failed, else the last one it reached."""
    failed = [c for c in cells if c.outcome == "failed"]
    reached = [c for c in cells if c.outcome != NOT_RUN]
    return failed[-1] if failed else (reached[-1] if reached else None)


# The kernel loads nbcache as it starts, but not as an IPython extension by name: a
# notebook's own `%load_ext nbcache` would then print "already loaded", an output
# a plain run does not have. Loading twice is a no-op, so that cell stays silent.
# What loads it is named here, not imported: it runs in the kernel, and the driver's side
# (this part) never imports the shell's (nbcache.ui).
_LOAD = "__import__('nbcache.ui.extension').ui.extension.load(get_ipython())"
KERNEL_ARGUMENTS = [f"--IPKernelApp.exec_lines={_LOAD}"]
# A kernel a driver runs and reads the cell log of (nbcache run, papermill's engine) also
# sends nbcache's warnings to that log, out of the executed notebook.
DRIVEN_KERNEL_ARGUMENTS = [
    f"--IPKernelApp.exec_lines={_LOAD}; "
    "__import__('nbcache.notebooks.kernelside').notebooks.kernelside.load(get_ipython())"
]


def kernel_environment(
    *, store: str | None = None, log: str | None = None, lazy: bool = True
) -> dict[str, str]:
    """The environment of a kernel that caches every cell (this process's, plus nbcache's)."""
    env = dict(os.environ)
    env["NBCACHE_AUTO"] = "lazy" if lazy else "1"
    if log:
        env["NBCACHE_AUTO_LOG"] = log
    if store:
        env["NBCACHE_DIR"] = store
    return env


class RunError(CacheError):
    """A notebook run that cannot start: no such kernel, a kernel of another language."""


def require_python(nb: Any, path: Path, kernel: str | None = None) -> None:
    """Refuse a notebook, or a ``--kernel``, of another language before any kernel starts:
    its code would otherwise run in Python and stop at its first line.

    Raises:
        RunError: the notebook's metadata, or the kernel named, says another language.
    """
    metadata = nb.get("metadata", {})
    spec = metadata.get("kernelspec", {}) if isinstance(metadata, dict) else {}
    info = metadata.get("language_info", {}) if isinstance(metadata, dict) else {}
    spec = spec if isinstance(spec, dict) else {}
    info = info if isinstance(info, dict) else {}
    said = spec.get("language") or info.get("name")
    if said and not is_python(str(said)):
        name = f" (kernel {spec['name']})" if spec.get("name") else ""
        raise RunError(
            f"{path.name} is a notebook in {said}{name}; nbcache runs Python notebooks only: "
            "run it with jupyter execute"
        )
    # the kernel asked for, else the one the notebook names when it says no language
    named = kernel or (None if said else spec.get("name"))
    language = kernel_language(str(named)) if named else None
    if language and not is_python(language):
        raise RunError(
            f"the kernel {named!r} runs {language}; nbcache runs Python kernels only "
            "(`jupyter kernelspec list` shows the kernels there are)"
        )


def _client_class() -> type[Any]:
    """nbclient's NotebookClient, sending each cell's id (see nbcache.notebooks.cellids)."""
    from nbclient import NotebookClient

    return with_cell_ids(NotebookClient)


def run_notebook(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    store: str | None = None,
    timeout: int | None = None,
    kernel: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[Any, RunSummary]:
    """Run the notebook at ``path`` in a fresh kernel in auto mode (none when unchanged);
    the executed notebook (written to ``out`` when given, even when a cell failed)."""
    source = Path(path)
    # nbformat only for a kernel: importing it takes seconds (see nbcache.notebooks.nbjson)
    nb = (None if parameters else nbjson.read(source)) or read_notebook(source, parameters)
    require_python(nb, source, kernel)
    if out is not None:
        writable(Path(out))
    summary = RunSummary()
    with tempfile.TemporaryDirectory(prefix="nbcache-run-") as scratch:
        log = os.path.join(scratch, "cells.jsonl")
        env = kernel_environment(store=absolute_store(store), log=log)
        start = time.perf_counter()
        whole = Whole.of(nb, source.parent, env, kernel)
        done = whole.restore(nb) if whole is not None else None
        if done is not None:
            summary.unchanged = done.made
            summary.cells = restored_outcomes(nb, done)
        else:
            nb = importlib.import_module("nbformat").from_dict(nb)  # as nbclient runs it
            summary.error = execute(
                nb, source.parent, env, kernel=kernel, timeout=timeout, batches=True
            )
            records = read_log(log)
            summary.cells = cell_outcomes(nb, records, summary.error)
            summary.warnings = warnings_of(nb, [r for r in records if "warning" in r])
            if whole is not None and summary.error is None:
                whole.keep(nb, records, time.perf_counter() - start, source.name)
        summary.elapsed = time.perf_counter() - start
    annotate(nb, summary.cells)
    # A run that reached no cell (the kernel did not start) leaves the file as it was:
    # written, it would only lose the outputs an earlier run left there.
    reached = summary.error is None or any(c.outcome != NOT_RUN for c in summary.cells)
    if out is not None and reached:
        nbjson.write(as_read(nb), os.fspath(out))  # as nbformat.write writes it
    return nb, summary


def restored_outcomes(nb: Any, done: Restored) -> list[CellOutcome]:
    """The code cells of ``nb`` written from the notebook's record, each restored."""
    out = []
    for index, why, seconds in done.cells:
        cell = nb.cells[index]
        first = first_code_line(cell.source)
        out.append(CellOutcome(index, str(cell.get("id")), RESTORED, seconds, (), why, first))
    return out


def writable(out: Path) -> None:
    """Refuse an output path the executed notebook cannot be written to before any
    kernel starts, not after the run it would hold.

    Raises:
        RunError: a folder, in a missing folder, or not writable (a FIFO or
            ``/dev/stdout`` is the user's to name).
    """
    if out.is_dir():
        raise RunError(f"-o {out} is a folder: name the executed notebook's file (-o out.ipynb)")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise RunError(f"-o {out}: there is no folder {folder}; create it first")
    if not os.access(out if out.exists() else folder, os.W_OK):
        raise RunError(f"-o {out} cannot be written (permission denied): name another file")


def execute(
    nb: Any,
    folder: Path,
    env: Mapping[str, str],
    *,
    kernel: str | None = None,
    timeout: int | None = None,
    batches: bool = False,
) -> str | None:
    """Run ``nb`` in a fresh kernel that loads nbcache, in ``folder``, with ``env``;
    None, or why it stopped. ``batches``: see :func:`nbcache.notebooks.batch.batching`."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    # What an earlier run left in the cells is not this run's (as papermill clears it):
    # a cell this run never reached must not look run, to the summary or to a reader.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
    options: dict[str, Any] = {"extra_arguments": DRIVEN_KERNEL_ARGUMENTS}
    if kernel:
        options["kernel_name"] = kernel
    else:
        options.update(kernel_name="python3", kernel_manager_class=kernel_manager_class())
    client = batching(_client_class(), env, batches)(
        nb,
        timeout=timeout,
        resources={"metadata": {"path": os.fspath(folder.resolve())}},
        **options,
    )
    if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        return None  # nothing to run: no kernel to start (and stop while it starts)
    try:
        launch = {} if kernel else launch_options(kernel_manager_class())
        client.execute(env=dict(env), **launch)
    except NoSuchKernel as exc:
        raise RunError(
            f"no kernel named {exc.name!r}: `jupyter kernelspec list` shows the kernels there are"
        ) from exc
    except CellExecutionError as exc:
        return _first_line(exc)
    except CellTimeoutError:
        return f"a cell ran longer than the --timeout of {timeout} s"
    except DeadKernelError:
        return "the kernel died"
    except RuntimeError as exc:  # jupyter_client: the kernel died before it answered
        return f"the kernel did not start ({exc})"
    return None


def absolute_store(store: str | None) -> str | None:
    """A store folder given on the command line is relative to where it was typed, not to
    the notebook's folder the kernel runs in; URLs stay as they are."""
    if store is None or "://" in store:
        return store
    return os.path.abspath(store)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# `%%cache --ignore NAME` is what an author can write in a notebook nbcache runs whole.
_IGNORE_ADVICE = re.compile(r"with --ignore (\w+)")


def _first_line(exc: BaseException) -> str:
    """The line that names the error (its last), without the kernel's terminal colours."""
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    tail = [line for line in text if line.strip()]
    return tail[-1][:200] if tail else type(exc).__name__


def cell_outcomes(
    nb: Any, records: list[dict[str, Any]], stopped: str | None = None
) -> list[CellOutcome]:
    """Every non-empty code cell of the executed ``nb`` with what it did, from the kernel's
    cell log records (the last one of each cell: a cell runs once per run); ``stopped``
    says why the run stopped (a timeout, a dead kernel), for the cell it stopped in."""
    by_id: dict[str, dict[str, Any]] = {}
    warned: dict[str, str] = {}
    for record in records:
        if not record.get("cell_id"):
            continue
        if "warning" in record:
            warned[str(record["cell_id"])] = str(record["warning"]).strip()
        else:
            by_id[str(record["cell_id"])] = record
    out: list[CellOutcome] = []
    stop: CellOutcome | None = None  # the last cell reached
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        first = first_code_line(cell.source)
        cell_id = str(cell.get("id"))
        found = by_id.get(cell_id)
        if found is None and cell.get("execution_count") is None and not cell.get("outputs"):
            # by its first line too: papermill inserts an error cell above it afterwards
            at = f"cell {stop.index + 1} `{stop.first_line}`" if stop else "an earlier cell"
            out.append(
                CellOutcome(
                    index, cell_id, NOT_RUN, why=f"the run stopped at {at}", first_line=first
                )
            )
            continue
        if found is None:
            outcome, why = _unlogged(cell)
            if outcome == "failed" and stopped and why in ("KeyboardInterrupt", _STOPPED):
                why = stopped  # the run stopped it (a timeout interrupts the kernel)
            out.append(CellOutcome(index, cell_id, outcome, why=why, first_line=first))
            stop = out[-1]
            continue
        outcome, why = _logged(found, warned.get(cell_id))
        out.append(
            CellOutcome(
                index,
                cell_id,
                outcome,
                float(found.get("seconds", 0.0) or 0.0),
                tuple(found.get("loaded", ())),
                why,
                first,
            )
        )
        stop = out[-1]
    return out


_KEPT_IN_MEMORY = (
    "it ran in less time than storing and restoring it would take, so it is kept in memory "
    "only and runs again next time"
)


def _logged(record: dict[str, Any], warning: str | None) -> tuple[str, str]:
    """A logged cell's outcome and why, in the words of ``%nbcache why`` (and of the
    warning it gave, for a value that could not be stored)."""
    reasons = [str(r) for r in record.get("why") or ()]
    outcome = str(record.get("outcome", "ran"))
    if outcome == "ran" and record.get("always"):
        outcome = "always runs"
    elif outcome == "ran" and "stored" in record and not record["stored"]:
        outcome = "kept in memory"  # its size in the store is 0
        # first: it is why the cell ran, whatever its key says
        said = warning.removeprefix("nbcache: ").removesuffix(".") if warning else None
        reasons.insert(0, said or _KEPT_IN_MEMORY)
    return outcome, "; ".join(reasons)


_STOPPED = "it stopped before nbcache could say what it did"


def _unlogged(cell: Any) -> tuple[str, str]:
    """A cell that executed with no record: it raised, or auto mode left it to IPython."""
    for output in cell.get("outputs", ()):
        if output.get("output_type") == "error":
            said = f"{output.get('ename')}: {output.get('evalue')}".removesuffix(": ")
            return "failed", _ANSI.sub("", said)[:200]
    stripped = cell.source.lstrip()
    if stripped.startswith("%%"):
        magic = stripped.split(None, 1)[0]
        return "not cached", f"it begins with the cell magic `{magic}`, which runs without nbcache"
    from ..run.auto import wraps  # only here: the CLI need not import the run layer

    if wraps(cell.source):
        return "failed", _STOPPED
    return "not cached", "it awaits at its top level, which IPython runs without nbcache"
