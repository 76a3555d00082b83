"""``nbcache run``: a notebook run headless in a fresh kernel in auto mode.

The kernel loads nbcache at start (``--ext=nbcache``) with ``NBCACHE_AUTO=lazy``,
so every code cell is looked up by its key and restores from its signed header
when it hits; only the cells whose keys changed, and the cells whose keys change
because of them, execute. The executed notebook has the outputs a plain run
gives (``jupyter execute`` is the reference). Each cell is sent with its id, so
``%nbcache why`` and the plan name cells stably across edits.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheError, warn
from ..ui.tutorial import kernel_manager_class, launch_options
from .cellids import with_cell_ids
from .params import inject

__all__ = [
    "DRIVEN_KERNEL_ARGUMENTS",
    "KERNEL_ARGUMENTS",
    "CellOutcome",
    "RunError",
    "RunSummary",
    "absolute_store",
    "execute",
    "kernel_environment",
    "logged_warnings",
    "read_notebook",
    "require_python",
    "run_notebook",
]


@dataclass(frozen=True)
class CellOutcome:
    """What one code cell did in a run."""

    index: int  # among the notebook's cells
    cell_id: str
    outcome: str  # "ran", "restored", "uncached" (nbcache cannot cache it), "not cached"
    seconds: float = 0.0  # how long its body ran, or (restored) how long it ran when made
    loaded: tuple[str, ...] = ()  # values loaded from the store before it ran


@dataclass
class RunSummary:
    """A whole run: each cell's outcome, the time it took and the time restoring saved."""

    cells: list[CellOutcome] = field(default_factory=list)
    elapsed: float = 0.0
    error: str | None = None
    # nbcache's warnings, kept out of the executed notebook: (cell index, first line, text)
    warnings: list[tuple[int | None, str, str]] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cells if c.outcome == outcome)

    @property
    def saved(self) -> float:
        return sum(c.seconds for c in self.cells if c.outcome == "restored")

    def warning_lines(self, prefix: str = "nbcache run") -> list[str]:
        """Each warning the kernel gave, as one line naming its cell."""
        out = []
        for index, first, text in self.warnings:
            text = _IGNORE_ADVICE.sub(r"by beginning the cell with `%%cache --ignore \1`", text)
            text = text.removeprefix("nbcache: ")
            where = f"cell {index + 1} `{first}`: " if index is not None else ""
            out.append(f"{prefix}: {where}{text}")
        return out

    def line(self) -> str:
        """The summary line: what ran, what restored, and the time saved."""
        from ..units import format_duration

        ran = self.count("ran") + self.count("uncached") + self.count("not cached")
        cells = f"{len(self.cells)} code cell{'' if len(self.cells) == 1 else 's'}"
        parts = [cells, f"{self.count('restored')} restored"]
        parts.append(f"{ran} ran")
        text = f"nbcache run: {', '.join(parts)} in {format_duration(self.elapsed)}"
        if self.saved:
            text += f"; restoring saved {format_duration(self.saved)}"
        if self.error:
            text += f"; stopped: {self.error}"
        return text


# The kernel loads nbcache as it starts, but not as an IPython extension by name: a
# notebook's own `%load_ext nbcache` would then print "already loaded", an output
# a plain run does not have. Loading twice is a no-op, so that cell stays silent.
KERNEL_ARGUMENTS = [
    "--IPKernelApp.exec_lines=__import__('nbcache.ui.extension').ui.extension.load(get_ipython())"
]
# A kernel a driver runs and reads the cell log of (nbcache run, papermill's engine) also
# sends nbcache's warnings to that log, out of the executed notebook.
DRIVEN_KERNEL_ARGUMENTS = [
    "--IPKernelApp.exec_lines="
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
    if said and not _is_python(str(said)):
        name = f" (kernel {spec['name']})" if spec.get("name") else ""
        raise RunError(
            f"{path.name} is a notebook in {said}{name}; nbcache runs Python notebooks only: "
            "run it with jupyter execute"
        )
    # the kernel asked for, else the one the notebook names when it says no language
    named = kernel or (None if said else spec.get("name"))
    language = _kernel_language(str(named)) if named else None
    if language and not _is_python(language):
        raise RunError(
            f"the kernel {named!r} runs {language}; nbcache runs Python kernels only "
            "(`jupyter kernelspec list` shows the kernels there are)"
        )


def _is_python(language: str) -> bool:
    return language.strip().lower().startswith(("python", "ipython"))


def _kernel_language(name: str) -> str | None:
    """The language of the kernel ``name``; None when there is no such kernel (starting it
    says so) or it names none."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        language = KernelSpecManager().get_kernel_spec(name).language
    except NoSuchKernel:
        return None
    return str(language) if language else None


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
    """Run the notebook at ``path`` in a fresh kernel in auto mode; the executed notebook
    (written to ``out`` when given, even when a cell failed) and what each cell did."""
    import importlib

    nbformat: Any = importlib.import_module("nbformat")  # untyped: kept at arm's length
    source = Path(path)
    nb = read_notebook(source, parameters)
    require_python(nb, source, kernel)
    summary = RunSummary()
    with tempfile.TemporaryDirectory(prefix="nbcache-run-") as scratch:
        log = os.path.join(scratch, "cells.jsonl")
        env = kernel_environment(store=absolute_store(store), log=log)
        start = time.perf_counter()
        summary.error = execute(nb, source.parent, env, kernel=kernel, timeout=timeout)
        summary.elapsed = time.perf_counter() - start
        records = _records(log)
        summary.cells = _outcomes(nb, [r for r in records if "warning" not in r])
        summary.warnings = _warnings(nb, [r for r in records if "warning" in r])
    if out is not None:
        nbformat.write(nb, os.fspath(out))
    return nb, summary


def execute(
    nb: Any,
    folder: Path,
    env: Mapping[str, str],
    *,
    kernel: str | None = None,
    timeout: int | None = None,
) -> str | None:
    """Run ``nb`` in a fresh kernel that loads nbcache, in ``folder``, with ``env``;
    None, or the one line that says why it stopped."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    options: dict[str, Any] = {"extra_arguments": DRIVEN_KERNEL_ARGUMENTS}
    if kernel:
        options["kernel_name"] = kernel
    else:
        options.update(kernel_name="python3", kernel_manager_class=kernel_manager_class())
    client = _client_class()(
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


def read_notebook(path: Path, parameters: Mapping[str, Any] | None = None) -> Any:
    """The notebook at ``path``, every cell with an id, the parameters injected."""
    import importlib

    nbformat: Any = importlib.import_module("nbformat")  # untyped: kept at arm's length
    with warnings.catch_warnings():
        # nbformat warns of cells without ids, which this run gives them
        warnings.simplefilter("ignore")
        nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if not cell.get("id"):
            cell["id"] = f"cell-{index}"  # nbformat < 4.5 has none: name cells by place
    if parameters and not inject(nb, dict(parameters)):
        names = ", ".join(f"-p {name}" for name in parameters)
        warn(
            f"nbcache: {path.name} has no cell tagged `parameters`, so {names} is set in a "
            "cell of its own before the first cell; tag the cell that sets the defaults "
            "`parameters` to set them after it",
            stacklevel=2,
        )
    return nb


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


def _records(log: str, offset: int = 0) -> list[dict[str, Any]]:
    try:
        with open(log, encoding="utf-8") as f:
            f.seek(offset)
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def logged_warnings(nb: Any, log: str, offset: int = 0) -> list[tuple[int | None, str, str]]:
    """The warnings a driven kernel wrote to the cell log ``log`` from ``offset`` on, each
    with the index and first line of the cell of ``nb`` it came from."""
    return _warnings(nb, [r for r in _records(log, offset) if "warning" in r])


def _warnings(nb: Any, records: list[dict[str, Any]]) -> list[tuple[int | None, str, str]]:
    """Each warning record with the cell it came from (its index and first line)."""
    where = {str(c.get("id")): (i, c) for i, c in enumerate(nb.cells)}
    out: list[tuple[int | None, str, str]] = []
    for record in records:
        index, cell = where.get(str(record.get("cell_id")), (None, None))
        first = _first_code_line(cell.source) if cell is not None else ""
        out.append((index, first, str(record["warning"]).strip()))
    return out


def _first_code_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 40 else line[:39] + "…"


def _outcomes(nb: Any, records: list[dict[str, Any]]) -> list[CellOutcome]:
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("cell_id"):
            by_id[str(record["cell_id"])] = record
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.get("execution_count") is None and not cell.get("outputs"):
            continue  # not reached: an earlier cell failed
        found = by_id.get(str(cell.get("id")))
        if found is None:
            out.append(CellOutcome(index, str(cell.get("id")), "not cached"))
            continue
        out.append(
            CellOutcome(
                index,
                str(cell.get("id")),
                str(found.get("outcome", "ran")),
                float(found.get("seconds", 0.0) or 0.0),
                tuple(found.get("loaded", ())),
            )
        )
    return out
