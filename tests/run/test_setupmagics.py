"""``run/setupmagics.py``: a cell that begins with magics setting the kernel up runs them
every time, then caches the code after them like any cell; the plan does the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.plan import plan
from nbcache.run.setupmagics import reads_namespace, split_setup
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell

ipython = TransformerManager().transform_cell
MIXED = "%matplotlib inline\n# the data\nxs = [i * i for i in range(5)]\nsum(xs)"


class Magics:
    """Stands for IPython's shell as a cell reaches it: the line magics it was asked for."""

    def __init__(self) -> None:
        self.called: list[tuple[str, str]] = []

    def run_line_magic(self, name: str, line: str) -> None:
        self.called.append((name, line))


def _cache(root: Path) -> Cache:
    return Cache(LocalStore(root), signer=Signer(b"secret"))


def test_leading_setup_magics_are_split_from_the_code_after_them() -> None:
    setup, rest = split_setup(ipython(MIXED))
    assert setup == "get_ipython().run_line_magic('matplotlib', 'inline')\n"
    # the code keeps its lines: line 3 of the cell is line 3 of what runs
    assert rest.splitlines()[2] == "xs = [i * i for i in range(5)]"
    assert not rest.splitlines()[0].strip() and "get_ipython" not in rest
    setup, rest = split_setup(ipython("%load_ext autoreload\n%autoreload 2\nimport json"))
    assert setup.count("run_line_magic") == 2 and rest.strip() == "import json"
    # imports above the magics: the magics run first, the imports stay in the code
    source = ipython("import numpy as np\nimport json\n%matplotlib inline\nx = np.ones(2)")
    setup, rest = split_setup(source)
    assert setup.splitlines() == ["", "", "get_ipython().run_line_magic('matplotlib', 'inline')"]
    assert rest.splitlines() == ["import numpy as np", "import json", "", "x = np.ones(2)"]
    assert split_setup(ipython("import json\n%matplotlib inline"))[1].strip() == "import json"
    for whole in (
        "%matplotlib inline",  # nothing after it: a cell of magics, as before
        "import json\nx = 1\n%matplotlib inline",  # code first: it might read the backend
        "%cd ..\nx = 1",  # changes what the code reads
        "%timeit f(1)\nx = 1",  # a measurement beside code
        "x = 1",
    ):
        setup, rest = split_setup(ipython(whole))
        assert setup == "" and rest == ipython(whole), whole
    literal = "get_ipython().run_line_magic('matplotlib', 'inline'); x = 1"
    assert split_setup(literal) == ("", literal)  # the code on the magic's own line


def test_a_cell_beginning_with_a_setup_magic_restores_its_code_and_runs_the_magic(
    tmp_path: Path,
) -> None:
    source = ipython(MIXED)
    results = []
    for _ in range(2):  # two fresh kernels on one store
        shell, magics = FakeShell(), Magics()
        shell.user_ns["get_ipython"] = lambda magics=magics: magics
        runner = CellRunner(shell, lambda: _cache(tmp_path))
        shell.cell_id = "mixed"
        results.append(runner.run(source, CellOptions(auto=True)))
        assert magics.called == [("matplotlib", "inline")]  # every time, restored or not
        assert shell.user_ns["xs"] == [0, 1, 4, 9, 16]
        assert runner.noted is not None
        outcomes = runner.noted["outcome"]
    assert results == [30, 30] and outcomes == "restored"

    shell, magics = FakeShell(), Magics()
    shell.user_ns["get_ipython"] = lambda: magics
    replayed: list[str] = []
    rows = plan(
        [("mixed", MIXED)],
        _cache(tmp_path),
        ipython,
        initial=dict(shell.user_ns),
        matplotlib=replayed.append,
    )
    assert replayed == ["inline"]  # the plan's kernel gets the backend the run sets
    assert [r.action for r in rows] == ["restore"] and rows[0].first_line.startswith("xs =")


def test_a_cell_with_any_other_magic_still_runs_uncached(tmp_path: Path) -> None:
    shell, magics = FakeShell(), Magics()
    shell.user_ns["get_ipython"] = lambda: magics
    runner = CellRunner(shell, lambda: _cache(tmp_path))
    for source in ("%cd ..\nx = 1", "x = 2\n%matplotlib inline"):
        runner.run(ipython(source), CellOptions(auto=True))
        assert runner.noted is not None and runner.noted["outcome"] == "uncached", source
    assert magics.called == [("cd", ".."), ("matplotlib", "inline")]
    assert shell.user_ns["x"] == 2


def test_a_magic_that_may_read_what_the_code_binds_is_not_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run first, such a magic would read a variable before its import binds it, or a
    lazy run's stand-in (``$fmt``); and a module beside the notebook may set what the
    magic after it sets (``matplotlib.use("agg")`` as it loads, which ``%matplotlib
    inline`` then overrides)."""
    (tmp_path / "plotsetup.py").write_text("import matplotlib\nmatplotlib.use('agg')\n")
    (tmp_path / "localpkg").mkdir()
    (tmp_path / "localpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for whole in (
        "import json\n%config InlineBackend.figure_format = '$fmt'\nx = 1",
        "%matplotlib {backend}\nx = 1",
        "import plotsetup\n%matplotlib inline\nx = 1",
        "import json, plotsetup\n%matplotlib inline\nx = 1",
        "from localpkg import thing\n%matplotlib inline\nx = 1",
        "import not_a_module_anywhere\n%matplotlib inline\nx = 1",
    ):
        setup, rest = split_setup(ipython(whole))
        assert setup == "" and rest == ipython(whole), whole
    # installed and built-in modules above the magic: split as before
    setup, _ = split_setup(ipython("import sys\nfrom os import path\n%matplotlib inline\nx = 1"))
    assert "matplotlib" in setup


def test_magics_that_may_read_the_namespace_are_told_apart() -> None:
    def reads(cell: str) -> bool:
        setup, _ = split_setup(ipython(cell + "\nx = 1"))
        assert setup, cell
        return reads_namespace(setup)

    assert not reads("%matplotlib inline\n%autoreload 2")
    assert not reads("%config InlineBackend.figure_format = 'retina'")
    assert not reads("%config InlineBackend")  # its help
    assert reads("%config InlineBackend.figure_format = fmt")
    assert reads("%load_ext greeter") and reads("%aimport helpers")
