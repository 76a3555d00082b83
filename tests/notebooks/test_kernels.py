"""Real notebooks in real kernels: what a user sees across restarts, read from the outputs.

Every notebook here is built with nbformat and run by nbclient in a fresh
ipykernel (one process per run, ~1 s each).  "A restart" is a second kernel
on the same store folder.  A cached cell's body appends a line to a log file
outside the store, so counting the log's lines counts the times it ran.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbcache.__main__ import main

from . import nbrun

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"

# The first line of every cached body: counts the runs, and names the cell stably.
LOG_LINE = "with open('runs.log', 'a') as log:\n    log.write('ran\\n')\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The kernels' working folder (the store is a sibling: tmp_path / "store")."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return nbrun.kernel_env(tmp_path, tmp_path / "store")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m nbcache tutorial` passes its own environment on: keep IPython's folder
    here too (conftest already sets the store, the secret and the config folder)."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))


def runs(folder: Path) -> int:
    """How many times a cached body ran in ``folder``."""
    log = folder / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def comparable(outputs: list[Any]) -> list[tuple[Any, ...]]:
    """Outputs as the user sees them: kind, stream or data and metadata (no counters)."""
    return [
        (o.output_type, o.text)
        if o.output_type == "stream"
        else (o.output_type, dict(o.data), dict(o.get("metadata", {})))
        for o in outputs
    ]


# -- restart -----------------------------------------------------------------------

RESTART = [
    "%load_ext nbcache\nimport sys\nprint(sys.executable)\nprint(sys.prefix)",
    "import pandas as pd\nfrom IPython.display import HTML, display\nn = 4",
    "%%cache\n" + LOG_LINE + "print('computing with n =', n)\n"
    "display(HTML('<b>squares</b>'))\n"
    "frame = pd.DataFrame({'x': range(n), 'y': [v * v for v in range(n)]})\n"
    "display(frame)\n"
    "total = int(frame.y.sum())\n"
    "print('total is', total, file=sys.stderr)\n"
    "total * 10\n",
    "print(repr(total), frame.to_dict('list'), Out[3])",
    "%%cache\n" + LOG_LINE + "doubled = frame.y * 2\nprint('doubled', list(doubled))\n",
]


def test_kernel_runs_this_interpreter(
    work: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The python3 kernel is this very interpreter (the venv's), not a bare `python`, even
    when another `python3` kernelspec comes first on the Jupyter path."""
    other = tmp_path / "jupyter" / "kernels" / "python3"
    other.mkdir(parents=True)
    spec = {"argv": ["/nonexistent/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]}
    (other / "kernel.json").write_text(
        json.dumps({**spec, "display_name": "x", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbrun.run(RESTART[:1], cwd=work, env=env)
    assert nbrun.text_of(nb, 0).splitlines() == [sys.executable, sys.prefix]


def test_restart_restores_variables_and_outputs(work: Path, env: dict[str, str]) -> None:
    """Kernel B runs no cached body: same variables, same outputs in order, "restored"."""
    a = nbrun.run(RESTART, cwd=work, env=env)
    b = nbrun.run(RESTART, cwd=work, env=env)

    assert nbrun.text_of(a, 0).splitlines() == [sys.executable, sys.prefix]
    assert runs(work) == 2  # kernel A ran both cached bodies; kernel B ran neither
    for nb in (a, b):
        assert nbrun.text_of(nb, 3) == "14 {'x': [0, 1, 2, 3], 'y': [0, 1, 4, 9]} 140\n"
    shown_a = comparable(nbrun.outputs(a, 2, status=False))
    shown_b = comparable(nbrun.outputs(b, 2, status=False))
    assert shown_b == shown_a
    stdout, html, table, stderr, result = nbrun.outputs(a, 2, status=False)
    assert (stdout.name, stdout.text) == ("stdout", "computing with n = 4\n")
    assert html.output_type == table.output_type == "display_data"
    assert html.data["text/html"] == "<b>squares</b>"
    assert "<table" in table.data["text/html"] and "y" in table.data["text/plain"]
    assert (stderr.name, stderr.text) == ("stderr", "total is 14\n")
    assert result.output_type == "execute_result" and result.data == {"text/plain": "140"}
    (status_a,) = nbrun.status_lines(a, 2)
    (status_b,) = nbrun.status_lines(b, 2)
    assert status_a.startswith("nbcache: computed total, frame in ")
    assert status_b.startswith("nbcache: restored total, frame (")
    # the cell's outputs, its result among them, in the plain run's order; then the status
    assert nbrun.outputs(b, 2)[-1].data["text/plain"] == status_b
    assert nbrun.outputs(b, 2)[-2].execution_count == 3
    assert comparable(nbrun.outputs(b, 4, status=False)) == comparable(
        nbrun.outputs(a, 4, status=False)
    )
    assert nbrun.text_of(b, 4).startswith("doubled [0, 2, 8, 18]")
    assert nbrun.status_lines(b, 4)[0].startswith("nbcache: restored doubled")
    assert not nbrun.errors(a) and not nbrun.errors(b)


# -- what makes a miss, and %nbcache why -----------------------------------------------

SETUP = "%load_ext nbcache\nn = 100"
HELPERS = "def inner(x):\n    return x + 1\n\n\ndef outer(x):\n    return inner(x) * 2\n"
CELL = (
    "%%cache\n" + LOG_LINE + "with open('data.csv') as f:\n"
    "    values = [int(line) for line in f]\n"
    "total = outer(n) + sum(values)\n"
    "total\n"
)
COMMENTED = (
    "%%cache\n" + LOG_LINE + "# read the data\n\n"
    "with open('data.csv')  as f:   # one number a line\n"
    "    values = [ int(line) for line in f ]\n"
    "\n"
    "total = outer( n ) + sum(values)  # the answer\n"
    "total\n"
)
BASE = [SETUP, HELPERS, CELL, "%nbcache why", "print('total =', total)"]
DATA = "1\n2\n3\n"


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The base notebook run once in kernel A: its working folder and its store."""
    root = tmp_path_factory.mktemp("base")
    folder = root / "work"
    folder.mkdir()
    (folder / "data.csv").write_text(DATA)
    store = root / "store"
    nb = nbrun.run(BASE, cwd=folder, env=nbrun.kernel_env(root, store))
    assert nbrun.status_lines(nb, 2)[0].startswith("nbcache: computed")
    assert nbrun.text_of(nb, 4) == "total = 208\n"  # outer(100) = 202, plus 1 + 2 + 3
    yield folder, store


def _edit_data(folder: Path) -> None:
    (folder / "data.csv").write_text("1\n2\n4\n")


CASES = {
    # name: (cells of kernel B, change to the files first, total, reasons shown by why)
    "edited cell": (
        [SETUP, HELPERS, CELL.replace("outer(n) + sum", "outer(n) - sum"), *BASE[3:]],
        None,
        196,
        ["the cell's code changed"],
    ),
    "upstream variable": (
        [SETUP.replace("100", "101"), *BASE[1:]],
        None,
        210,
        ["input `n` changed (100 -> 101)"],
    ),
    "helper two calls deep": (
        [SETUP, HELPERS.replace("x + 1", "x + 2"), *BASE[2:]],
        None,
        210,
        ["helper `outer()` changed", "helper `inner()` changed (used by `outer()`)"],
    ),
    "data file": (BASE, _edit_data, 209, ["file `{folder}/data.csv` changed"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_change_is_a_miss_and_why_names_it(
    case: str, computed: tuple[Path, Path], tmp_path: Path
) -> None:
    """Edited code, a changed input, helper or data file: kernel B recomputes, and
    `%nbcache why` says what changed, and only that."""
    folder, base_store = computed
    cells, change, total, reasons = CASES[case]
    store = tmp_path / "store"
    shutil.copytree(base_store, store)  # each case starts from kernel A's store alone
    before = runs(folder)
    saved = (folder / "data.csv").read_bytes(), (folder / "data.csv").stat()
    try:
        if change is not None:
            change(folder)
        nb = nbrun.run(cells, cwd=folder, env=nbrun.kernel_env(tmp_path, store))
    finally:
        (folder / "data.csv").write_bytes(saved[0])
        os.utime(folder / "data.csv", ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
    assert runs(folder) == before + 1
    assert nbrun.status_lines(nb, 2)[0].startswith("nbcache: computed")
    assert nbrun.text_of(nb, 4) == f"total = {total}\n"
    why = [line.removeprefix("- ") for line in nbrun.text_of(nb, 3).splitlines()]
    assert why == [r.format(folder=os.path.realpath(folder)) for r in reasons]


def test_comments_and_layout_are_a_hit(computed: tuple[Path, Path], tmp_path: Path) -> None:
    """A comment- and whitespace-only edit restores in kernel B without running."""
    folder, base_store = computed
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    before = runs(folder)
    cells = [SETUP, HELPERS, COMMENTED, *BASE[3:]]
    nb = nbrun.run(cells, cwd=folder, env=nbrun.kernel_env(tmp_path, store))
    assert runs(folder) == before
    assert nbrun.status_lines(nb, 2)[0].startswith("nbcache: restored total, values")
    assert nbrun.text_of(nb, 4) == "total = 208\n"
    assert "it restored: its key matches the entry" in nbrun.text_of(nb, 3)


def test_same_relative_path_in_another_folder_is_a_miss(work: Path, env: dict[str, str]) -> None:
    """After %cd, the cell's `open('data.csv')` reads another file: that must be a miss."""
    for name, data in (("a", "1\n"), ("b", "5\n")):
        (work / name).mkdir()
        (work / name / "data.csv").write_text(data)
    read = "%%cache\nwith open('data.csv') as f:\n    values = [int(line) for line in f]\n"
    cells = ["%load_ext nbcache\n%cd -q a", read, "%cd -q ../b", read, "print(values)"]
    nb = nbrun.run(cells, cwd=work, env=env)
    assert nbrun.text_of(nb, 4) == "[5]\n"


# -- faults -------------------------------------------------------------------------

FAILING = (
    "%%cache\n" + LOG_LINE + "def helper():\n    raise ValueError('user bug')\nx = 1\nhelper()\n"
)


def test_failing_cell_shows_the_users_error_and_stores_nothing(
    work: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """ename, evalue and the traceback are the user's; nothing is stored, a rerun reruns."""
    plain = FAILING.removeprefix("%%cache\n")
    nb = nbrun.run(
        ["%load_ext nbcache", FAILING, FAILING, plain], cwd=work, env=env, allow_errors=True
    )
    cached, again, without = (nb.cells[i].outputs for i in (1, 2, 3))
    assert runs(work) == 3  # the body ran both times the cached cell ran
    for outputs in (cached, again):
        (error,) = [o for o in outputs if o.output_type == "error"]
        assert (error.ename, error.evalue) == ("ValueError", "user bug")
        text = nbrun.traceback_text(error)
        assert "----> 7 helper()" in text  # line 7 of the cell as the user sees it
        assert "----> 5     raise ValueError('user bug')" in text
        assert text.rstrip().endswith("ValueError: user bug")
        for internal in ("nbcache/", "site-packages", "cellcache.py", "magics.py"):
            assert internal not in text
    assert not nbrun.status_lines(nb, 1) and not nbrun.status_lines(nb, 2)
    # the innermost frame reads as it does without the magic (one line lower: %%cache)
    (plain_error,) = [o for o in without if o.output_type == "error"]

    def innermost(error: Any) -> str:
        return re.sub(r"\d+", "#", nbrun.traceback_text(error).split("in helper()")[-1])

    assert innermost(cached[-1]) == innermost(plain_error)
    entries = tmp_path / "store" / "v1" / "entries"
    assert not entries.exists() or not [p for p in entries.rglob("*") if p.is_file()]


LOCKED = (
    "%%cache\n"
    + LOG_LINE
    + "import threading\nlock = threading.Lock()\nvalue = 42\nprint('value set')\n"
)


def test_unpicklable_value_warns_once_and_runs_again_after_restart(
    work: Path, env: dict[str, str]
) -> None:
    """A lock: the cell completes, one stderr line names `lock`; a restart runs it again."""
    cells = ["%load_ext nbcache", LOCKED, "print(value, type(lock).__name__)"]
    for kernel in (1, 2):
        nb = nbrun.run(cells, cwd=work, env=env)
        assert runs(work) == kernel
        assert nbrun.text_of(nb, 1) == "value set\n"
        assert nbrun.text_of(nb, 2) == "42 lock\n"
        (warning,) = nbrun.text_of(nb, 1, "stderr").splitlines()
        assert warning.startswith("nbcache: this cell's `lock` (_thread.lock) cannot be pickled")
        assert "memory only" in warning
        (status,) = nbrun.status_lines(nb, 1)
        assert status.startswith("nbcache: computed value, lock, threading")
        assert status.endswith("kept in memory")
        assert not nbrun.errors(nb)


def test_unpicklable_value_warns_every_time_the_cell_computes(
    work: Path, env: dict[str, str]
) -> None:
    """A new input makes the cell compute again, still with a lock: warned again."""
    cell = "%%cache\nimport threading\nlock = threading.Lock()\ny = x\n"
    nb = nbrun.run(["%load_ext nbcache\nx = 5", cell, "x = 6", cell], cwd=work, env=env)
    for index in (1, 3):
        assert nbrun.status_lines(nb, index)[0].startswith("nbcache: computed y, lock")
        assert "`lock` (_thread.lock) cannot be pickled" in nbrun.text_of(nb, index, "stderr")


def test_corrupt_entry_is_one_warning_and_a_recompute(
    work: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Bytes flipped in the stored entry between kernels: one warning line, recomputed,
    and no traceback anywhere."""
    cells = ["%load_ext nbcache", "%%cache\n" + LOG_LINE + "numbers = list(range(1000))\n"]
    cells += ["print(sum(numbers))"]
    nbrun.run(cells, cwd=work, env=env)
    (entry,) = [p for p in (tmp_path / "store" / "v1" / "entries").rglob("*") if p.is_file()]
    data = bytearray(entry.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 8):
        data[offset] ^= 0xFF
    entry.write_bytes(bytes(data))

    nb = nbrun.run(cells, cwd=work, env=env)
    assert runs(work) == 2
    (warning,) = nbrun.text_of(nb, 1, "stderr").splitlines()
    assert warning.startswith(f"nbcache: ignored and removed the cached entry {entry.name[:12]}")
    assert nbrun.status_lines(nb, 1)[0].startswith("nbcache: computed numbers")
    assert nbrun.text_of(nb, 2) == "499500\n"
    assert not nbrun.errors(nb)
    streams = [o.text for c in nb.cells for o in c.outputs if o.output_type == "stream"]
    assert not any("Traceback" in text for text in streams)


# -- @memoize and %memoize -------------------------------------------------------------

MEMO = [
    "%load_ext nbcache\nfrom nbcache import memoize",
    "def helper(x):\n"
    "    return x * 2\n"
    "\n\n"
    "@memoize\n"
    "def f(x):\n"
    "    with open('runs.log', 'a') as log:\n"
    "        log.write('ran\\n')\n"
    "    return helper(x) + 1\n",
    "def g(x):\n    return x**2\n\n\n%memoize g",
    "print(f(20), g(3))",
    "for fn in (f, g):\n"
    "    info = fn.cache_info()\n"
    "    print(info.hits, info.misses, info.store_hits)",
]


def test_memoized_results_survive_a_restart(work: Path, env: dict[str, str]) -> None:
    """@memoize and %memoize: computed in kernel A, a store hit in kernel B."""
    a = nbrun.run(MEMO, cwd=work, env=env)
    b = nbrun.run(MEMO, cwd=work, env=env)
    assert nbrun.text_of(a, 3) == nbrun.text_of(b, 3) == "41 9\n"
    assert nbrun.text_of(a, 4) == "0 1 0\n0 1 0\n"  # hits misses store_hits, f then g
    assert nbrun.text_of(b, 4) == "1 0 1\n1 0 1\n"
    assert runs(work) == 1


# -- python -m nbcache tutorial ----------------------------------------------------------


def _tiny_notebook(folder: Path) -> Path:
    nb = nbrun.build(["%load_ext nbcache", "%%cache\nsquares = [i * i for i in range(1000)]"])
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.usefixtures("cli_env")
def test_tutorial_command_restores_in_the_second_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run 1 computes, run 2 (a fresh kernel) restores; --out saves run 2's notebook; a
    second invocation says why its run 1 restored too."""
    path = _tiny_notebook(tmp_path)
    out = tmp_path / "executed.ipynb"
    assert main(["tutorial", str(path), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    store = os.environ["NBCACHE_DIR"]
    assert lines[0] == f"nbcache tutorial: {path}, store {store}"
    assert lines[1].startswith("run 1 (fresh kernel): ")
    assert lines[2].startswith("  In [2]: nbcache: computed squares in ")
    assert lines[3].startswith("run 2 (restarted kernel): ")
    assert lines[4].startswith("  In [2]: nbcache: restored squares (")
    assert lines[5] == f"saved the executed notebook to {out}"
    saved = nbformat.read(out, as_version=4)
    assert nbrun.status_lines(saved, 1)[0].startswith("nbcache: restored squares")

    # run again: the store already holds the result, and the command says so
    assert main(["tutorial", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("  In [2]: nbcache: restored squares (")
    assert lines[-1].startswith("run 1 restored too: this store already held")


def test_tutorial_command_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No notebook, or no nbclient: one line on stderr and exit code 2."""
    monkeypatch.chdir(tmp_path)
    assert main(["tutorial"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"nbcache: no notebook at {os.path.join('notebooks', 'quickstart.ipynb')}: run this "
        "from the folder that holds notebooks/quickstart.ipynb, or give the notebook's path\n"
    )
    path = _tiny_notebook(tmp_path)
    monkeypatch.setitem(sys.modules, "nbclient", None)
    assert main(["tutorial", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "`nbclient` is not installed" in err
    assert err.rstrip().endswith('pip install "nbcache[notebook]"')


@pytest.mark.usefixtures("cli_env")
def test_quickstart_runs_headless_and_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart runs top to bottom without errors, run 1 computes its cached cells
    and run 2 restores them all, memoized calls included; it is stored without outputs."""
    out = tmp_path / "quickstart.ipynb"
    assert main(["tutorial", str(QUICKSTART), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    first, second = printed.split("run 2 (restarted kernel): ")
    assert "nbcache: computed" in first and "nbcache: restored" not in first
    assert "nbcache: restored" in second and "nbcache: computed" not in second
    # Run 1 shows the background cell as a task card, run 2 restores it with a status line.
    assert second.count("In [") == first.count("In [") + 1 >= 3
    saved = nbformat.read(out, as_version=4)
    assert not nbrun.errors(saved)
    (info,) = [c for c in saved.cells if c.source.endswith("reorder_point.cache_info()")]
    assert "misses=0" in info.outputs[-1].data["text/plain"]
    assert "store_hits=5" in info.outputs[-1].data["text/plain"]
    stored = nbformat.read(QUICKSTART, as_version=4)
    assert stored.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in stored.cells)
