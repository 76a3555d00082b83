"""A notebook nobody touched: ``nbcache run`` stores every cell it can, so run 2 executes
only the cells that always run, and once a run reached every cell it writes the stored
outputs again with no kernel started. Never stale: an edited cell, another parameter, a
file the notebook read, a local module, an installed distribution's version or an entry
gone from the store each send the run back to a kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbcache.notebooks import plan, runner
from nbcache.notebooks.unchanged import allowed, open_cache

from . import nbrun
from .clients import client_env, write_notebook
from .nbrun import kernel_env

CELLS = [
    ("params", "alpha = 1"),
    ("plots", "%matplotlib inline"),
    ("imports", "import helper\nimport fakedist"),
    ("read", "data = open('data.txt').read()"),
    ("cheap", "total = alpha + helper.K + len(data)\nprint(total, fakedist.NAME)"),
    ("timed", "%timeit total + 1"),
    ("shown", "total * 2"),
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebook folder with a local module, a data file and an installed distribution
    of its own on the kernel's path; the driver's environment is the kernel's."""
    site = tmp_path / "site" / "site-packages"
    (site / "fakedist").mkdir(parents=True)
    (site / "fakedist" / "__init__.py").write_text("NAME = 'fake'\n")
    dist(site, "1.0")
    env = client_env(tmp_path)
    env.pop("NBCACHE_AUTO_MIN_SECONDS")  # the default rule: no threshold set
    env["PYTHONPATH"] = f"{site}:{env.get('PYTHONPATH', '')}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NBCACHE_AUTO_MIN_SECONDS", raising=False)
    (tmp_path / "helper.py").write_text("K = 10\n")
    (tmp_path / "data.txt").write_text("abc")
    write_notebook(tmp_path / "nb.ipynb", CELLS, tags={"params": ["parameters"]})
    return tmp_path


def dist(site: Path, version: str) -> None:
    """``fakedist``'s metadata at ``version`` (the name of its folder carries it)."""
    for old in site.glob("fakedist-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"fakedist-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakedist\nVersion: {version}\n")


class Runs:
    """``nbcache run`` in this process, counting the kernels it starts."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.kernels = 0
        execute = runner.execute

        def counted(*args: Any, **kwargs: Any) -> str | None:
            self.kernels += 1
            return execute(*args, **kwargs)

        monkeypatch.setattr(runner, "execute", counted)

    def run(self, out: str, **options: Any) -> tuple[runner.RunSummary, bool]:
        """Run nb.ipynb into ``out``; its summary, and whether a kernel started."""
        before = self.kernels
        _, summary = runner.run_notebook(self.folder / "nb.ipynb", out=self.folder / out, **options)
        assert summary.error is None, summary.line()
        return summary, self.kernels > before


def shown(path: Path) -> list[Any]:
    nb = nbformat.read(path, as_version=4)
    return [
        (c.execution_count, json.dumps(c.outputs, sort_keys=True))
        for c in nb.cells
        if c.cell_type == "code"
    ]


def text(path: Path, cell_id: str) -> str:
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if c.get("id") == cell_id]
    return "".join(o.get("text", "") for o in cell.outputs)


def test_the_magics_that_allow_a_run_without_a_kernel() -> None:
    assert allowed("%matplotlib inline") == "matplotlib"
    assert allowed("# setup\n%load_ext autoreload\n%autoreload 2") == "load_ext"
    assert allowed("%config InlineBackend.figure_format = 'svg'") == "config"
    assert allowed("%timeit f(x)") == "timeit"
    assert allowed("%time x = f()") is None  # it binds x for the cells after it
    assert allowed("%time (x := f())") is None
    for other in ("!ls", "%cd ..", "%run other.py", "%env A=1", "%pip install x", "x = 1"):
        assert allowed(other) is None, other


def test_an_unchanged_notebook_is_written_again_with_no_kernel(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs(folder, monkeypatch)
    first, kernel = runs.run("one.ipynb")
    assert kernel and first.unchanged is None
    assert [c.outcome for c in first.cells] == [
        "ran",
        "uncached",
        "ran",
        "ran",
        "ran",
        "uncached",
        "ran",
    ]
    second, kernel = runs.run("two.ipynb")
    assert not kernel
    assert "7 code cells, 7 restored, 0 ran" in second.line()
    assert second.line().endswith(": no kernel started")
    third, kernel = runs.run("three.ipynb")
    assert not kernel and "unchanged since" in third.line()
    assert (
        shown(folder / "three.ipynb") == shown(folder / "two.ipynb") == shown(folder / "one.ipynb")
    )
    nb = nbformat.read(folder / "three.ipynb", as_version=4)
    records = {c.id: c.metadata["nbcache"] for c in nb.cells if c.cell_type == "code"}
    assert records["read"]["outcome"] == "restored"
    assert records["read"]["why"].startswith("unchanged since ")
    assert records["read"]["why"].endswith(": no kernel started")
    assert "the output `%timeit` gave then is kept" in records["timed"]["why"]
    assert nb.metadata["language_info"]["name"] == "python"
    # in place, as pre-commit runs it: the second run leaves the file byte for byte
    for _ in range(2):
        before = (folder / "nb.ipynb").read_bytes()
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "nbcache", "run", "nb.ipynb"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0 and "no kernel started" in done.stdout, done.stderr
        # importing nbformat (jsonschema with it) took most of such a run's seconds
        assert not [ln for ln in done.stderr.splitlines() if ln.endswith("| nbformat")]
    assert (folder / "nb.ipynb").read_bytes() == before


def test_every_change_a_cell_hit_checks_starts_the_kernel(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs(folder, monkeypatch)
    assert runs.run("out.ipynb")[1]
    assert not runs.run("out.ipynb")[1]
    assert text(folder / "out.ipynb", "cheap") == "14 fake\n"

    (folder / "data.txt").write_text("abcd")  # a file a cell read
    assert runs.run("out.ipynb")[1]
    assert text(folder / "out.ipynb", "cheap") == "15 fake\n"
    assert not runs.run("out.ipynb")[1]  # the kernel's run kept a new record

    (folder / "helper.py").write_text("K = 20\n")  # a local module
    assert runs.run("out.ipynb")[1]
    assert text(folder / "out.ipynb", "cheap") == "25 fake\n"

    dist(folder / "site" / "site-packages", "2.0")  # an installed distribution's version
    assert runs.run("out.ipynb")[1]

    cache = open_cache({"NBCACHE_DIR": str(folder / "store")}, folder)  # an entry gone
    assert cache is not None
    evicted = [r for r in cache.ledger.records() if r.first_line.startswith("total =")]
    assert evicted
    for record in evicted:
        cache.remove(record.key)
    assert runs.run("out.ipynb")[1]
    assert not runs.run("out.ipynb")[1]

    summary, kernel = runs.run("p.ipynb", parameters={"alpha": 2})  # another parameter
    assert kernel
    assert text(folder / "p.ipynb", "cheap") == "26 fake\n"

    nb = nbformat.read(folder / "nb.ipynb", as_version=4)  # an edited cell
    nb.cells[-1].source = "total * 3"
    nbformat.write(nb, folder / "nb.ipynb")
    summary, kernel = runs.run("out.ipynb")
    assert kernel and summary.count("ran") == 1, summary.line()


@pytest.mark.parametrize("threshold", [None, "3600"], ids=["cost rule", "every cell cheap"])
def test_a_notebook_with_a_cell_that_always_runs_executes_only_it_from_run_two_on(
    folder: Path, monkeypatch: pytest.MonkeyPatch, threshold: str | None
) -> None:
    """Cheap cells are stored too: otherwise they ran again in run 2, took longer there
    (they load what they read) and were stored from run 3 on. With a threshold of an
    hour every cell is under it whatever the machine's load, so what the run does cannot
    hang on timing: interactive auto mode would keep each in memory only."""
    if threshold is not None:
        monkeypatch.setenv("NBCACHE_AUTO_MIN_SECONDS", threshold)
    cells = [("a", "a = 1"), ("b", "b = a + 1"), ("echo", "!echo hi"), ("c", "c = b * 2\nc")]
    write_notebook(folder / "nb.ipynb", cells)
    runs = Runs(folder, monkeypatch)
    for n in range(3):
        summary, kernel = runs.run(f"out{n}.ipynb")
        assert kernel  # a shell escape may do anything: the kernel starts every time
        ran = [c.first_line for c in summary.cells if c.outcome != "restored"]
        assert ran == (["a = 1", "b = a + 1", "!echo hi", "c = b * 2"] if n == 0 else ["!echo hi"])
        assert not summary.count("kept in memory")


def test_an_entry_made_again_since_the_record_starts_the_kernel(tmp_path: Path) -> None:
    """Another run (another notebook, a session sharing the store) may replace a cell's
    entry under the same key: its outputs are then no longer the record's."""
    from nbcache.cache.core import Cache
    from nbcache.entry.signing import Signer
    from nbcache.notebooks.unchanged import Whole
    from nbcache.store import LocalStore

    cache = Cache(LocalStore(tmp_path / "store"), signer=Signer(b"k" * 32))
    entry = f"{7:032x}"
    cache.put(entry, {"x": 1}, {"files": {}, "paths": {}})
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", id="a", execution_count=1)]
    logged = [{"cell_id": "a", "outcome": "ran", "key": entry, "seconds": 0.5}]
    whole = Whole(f"{8:032x}", tmp_path, {}, cache)
    assert whole.keep(nb, logged, 1.0, "nb.ipynb")
    assert whole.restore(nb) is not None
    __import__("time").sleep(0.01)
    cache.overwrite(entry, {"x": 2}, {"files": {}, "paths": {}})
    assert whole.restore(nb) is None


def test_the_plan_says_when_no_kernel_would_start_and_the_run_then_does_what_it_says(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs(folder, monkeypatch)
    kernels: list[str] = []
    execute = plan.execute

    def counted(*args: Any, **kwargs: Any) -> str | None:
        kernels.append("plan")
        return execute(*args, **kwargs)

    monkeypatch.setattr(plan, "execute", counted)

    def agree(said: plan.NotebookPlan, out: str) -> None:
        nb = nbformat.read(folder / out, as_version=4)
        done = {
            n: c.metadata["nbcache"]["outcome"]
            for n, c in enumerate(nb.cells, start=1)
            if c.cell_type == "code"
        }
        assert sorted(row.number for row in said.rows) == sorted(done)
        for row in said.rows:
            assert row.allows(done[row.number]), (row.line(), done[row.number])

    runs.run("one.ipynb")
    said = plan.plan_notebook(folder / "nb.ipynb")
    assert not kernels  # the plan, too, started no kernel
    assert said.unchanged and said.lines()[-1] == f"nbcache run --plan: {plan.NO_KERNEL}"
    # %matplotlib and %timeit run in every kernel, but with none they restore too
    assert [row.action for row in said.rows] == ["restore"] * len(CELLS)
    assert "no kernel would start" in said.rows[0].line()
    assert not runs.run("two.ipynb")[1]
    agree(said, "two.ipynb")

    nb = nbformat.read(folder / "nb.ipynb", as_version=4)  # an edit: a kernel, both sides
    nb.cells[-1].source = "total * 3"
    nbformat.write(nb, folder / "nb.ipynb")
    said = plan.plan_notebook(folder / "nb.ipynb")
    assert kernels == ["plan"] and not said.unchanged
    assert not any("no kernel" in line for line in said.lines())
    assert runs.run("three.ipynb")[1]
    agree(said, "three.ipynb")


MIXED = [
    ("imports", "import matplotlib\nimport numpy as np"),
    # as seaborn's tutorials begin: a backend, then a seed, in one cell
    ("mixed", "%matplotlib agg\nnp.random.seed(sum(map(ord, 'aesthetics')))"),
    ("draw", "print(np.random.normal(size=3).round(6).tolist())"),
    ("backend", "print(matplotlib.get_backend())"),
]
# as many older tutorials begin: the imports, then the backend, in one cell
IMPORTS_FIRST = [
    ("imports", "import matplotlib\nimport numpy as np\n%matplotlib agg"),
    ("mixed", "np.random.seed(sum(map(ord, 'aesthetics')))"),
    *MIXED[2:],
]


@pytest.mark.parametrize("cells", [MIXED, IMPORTS_FIRST], ids=["magic-first", "imports-first"])
def test_a_cell_of_a_setup_magic_and_code_restores_with_no_kernel_and_sets_up_a_run(
    folder: Path, monkeypatch: pytest.MonkeyPatch, cells: list[tuple[str, str]]
) -> None:
    """``%matplotlib`` beside code: the code is cached like any cell, so an unchanged
    notebook starts no kernel; a run that starts one runs the magic before the cells
    after it, which then see the backend a plain run sets."""
    write_notebook(folder / "nb.ipynb", cells)
    runs = Runs(folder, monkeypatch)
    first, kernel = runs.run("one.ipynb")
    assert kernel and [c.outcome for c in first.cells] == ["ran"] * 4
    assert plan.plan_notebook(folder / "nb.ipynb").unchanged  # no kernel: the run's answer
    second, kernel = runs.run("two.ipynb")
    assert not kernel and second.line().endswith(": no kernel started")
    assert shown(folder / "two.ipynb") == shown(folder / "one.ipynb")
    assert text(folder / "two.ipynb", "backend") == "agg\n"

    nb = nbformat.read(folder / "nb.ipynb", as_version=4)  # a later cell edited
    edited = "print(matplotlib.get_backend(), np.random.normal(size=2).round(6).tolist())"
    nb.cells[-1].source = edited
    nbformat.write(nb, folder / "nb.ipynb")
    said = plan.plan_notebook(folder / "nb.ipynb")  # in a kernel, as the run's
    assert [row.action for row in said.rows] == ["restore", "restore", "restore", "run"]
    third, kernel = runs.run("three.ipynb")
    assert kernel
    assert [c.outcome for c in third.cells] == ["restored", "restored", "restored", "ran"]
    plain = nbrun.run(
        [s for _, s in cells[:-1]] + [edited],
        cwd=folder,
        env=kernel_env(folder, folder / "plain"),
    )
    for cell_id, index in (("draw", 2), ("backend", 3)):
        assert text(folder / "three.ipynb", cell_id) == nbrun.text_of(plain, index)


def test_an_error_after_a_setup_magic_names_the_cells_own_line(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(
        folder / "nb.ipynb", [("failing", "%matplotlib agg\nx = 1\n1 / x * (x - 1) / 0")]
    )
    nb, summary = runner.run_notebook(folder / "nb.ipynb", out=folder / "out.ipynb")
    assert summary.error is not None
    (error,) = nbrun.errors(nb)
    assert "----> 3 1 / x * (x - 1) / 0" in nbrun.traceback_text(error)
