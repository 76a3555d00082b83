"""``nbcache run`` against a plain run on notebooks that attack a lazy run: a cell that
runs while restored cells' imports wait, values that run notebook code as they load, and
a cell that begins with imports and then set-up magics (``%matplotlib inline``). Each
run, the first, one unchanged and one after an edit of the last cell (which starts a
kernel in which the cells above restore lazily), writes what the plain run writes."""

from __future__ import annotations

from pathlib import Path

from .test_run_attacks import cached, plain, write


def _three_runs(root: Path, cells: list[str], edited_last: str) -> list[list[str]]:
    """Run 1, run 2 unchanged, run 3 with the last cell edited: each as the plain run
    writes; the cells' outcomes of each run."""
    outcomes = []
    write(root, cells)
    expected = plain(root)
    for _ in range(2):
        found, summary = cached(root)
        assert found == expected, summary.line()
        outcomes.append([c.outcome for c in summary.cells])
    write(root, [*cells[:-1], edited_last])
    found, summary = cached(root)
    assert found == plain(root), summary.line()
    outcomes.append([c.outcome for c in summary.cells])
    return outcomes


HASHED = [
    "import colorsys",
    "class Hue:\n"
    "    def __init__(self, v):\n"
    "        self.v = v\n"
    "    def __hash__(self):\n"
    "        return hash(colorsys.rgb_to_hsv(self.v, 0, 0))\n"
    "    def __eq__(self, other):\n"
    "        return self.v == other.v",
    "hues = {Hue(0.1), Hue(0.2)}",
    "print(len(hues))",
]


def test_values_whose_loading_runs_notebook_code_reading_a_waiting_import(
    folder: Path,
) -> None:
    """Unpickling a set of a notebook class's objects calls its ``__hash__``, which reads
    a module a restored cell imported: the import is made first, as a plain run had it.
    It met the stand-in: the entry was removed as broken, and the cell ran again."""
    outcomes = _three_runs(folder, HASHED, "print(len(hues) + 1)")
    assert outcomes[2] == ["restored"] * 3 + ["ran"]


NAMESPACE = [
    "import colorsys",
    "a = [1, 2]",
    "print(type((lambda: 0).__globals__['a']).__name__)\n"
    "print((lambda: 0).__globals__['color' + 'sys'].__name__)",
]


def test_a_cell_reaching_the_namespace_through_a_functions_globals(folder: Path) -> None:
    """``(lambda: 0).__globals__`` is the notebook's namespace: the cell names neither
    the list nor the module it reads there, so every value loads and every import is
    made first. It printed the stand-ins'."""
    edited = NAMESPACE[-1] + "\nz = 1"
    assert _three_runs(folder, NAMESPACE, edited)[2] == ["restored"] * 2 + ["ran"]


EXPANDED = [
    "backend = 'inline'",
    "import json\n%matplotlib $backend\nx = 1",
    "import matplotlib\nprint(matplotlib.get_backend(), x)",
]


def test_a_set_up_magic_reading_a_variable_runs_with_its_value(folder: Path) -> None:
    """IPython expands ``$backend`` from the namespace: the magic ran before the values
    of the restored cells were loaded, and read a stand-in. Such a cell runs as a
    whole, uncached, as any cell with a line magic."""
    _three_runs(folder, EXPANDED, EXPANDED[-1].replace(", x", ", x + 1"))


LOCAL_BACKEND = [
    "import plotsetup\n%matplotlib inline\nx = 1",
    "import matplotlib\nprint(matplotlib.get_backend(), x)",
]


def test_a_local_module_setting_the_backend_above_matplotlib_inline(folder: Path) -> None:
    """A module beside the notebook that calls ``matplotlib.use("agg")`` as it loads,
    then ``%matplotlib inline``: the magic overrides it in a plain run. Run before the
    import, it was overridden: no figure showed."""
    (folder / "plotsetup.py").write_text("import matplotlib\nmatplotlib.use('agg')\n")
    edited = LOCAL_BACKEND[-1].replace(", x", ", x + 1")
    _three_runs(folder, LOCAL_BACKEND, edited)


READING = [
    "fmt = 'svg'\ngreeting = 'hello'",
    "%config InlineBackend.figure_format = fmt\n%load_ext greeter\nx = 1",
    "from matplotlib_inline.config import InlineBackend\n"
    "print(InlineBackend.instance().figure_formats, x)",
]


def test_set_up_magics_that_read_the_namespace_read_the_values(folder: Path) -> None:
    """``%config X = fmt`` evaluates ``fmt`` in the namespace, and an extension's loader
    may read it: before them, the values of the restored cells load. They read the
    stand-ins (``<fmt: not loaded ...>``, a syntax error)."""
    (folder / "greeter.py").write_text(
        "def load_ipython_extension(ip):\n    print(ip.user_ns['greeting'])\n"
    )
    _three_runs(folder, READING, READING[-1].replace(", x", ", x + 1"))


FORMULA = [
    "import numpy as np\nimport pandas as pd\nimport statsmodels.formula.api as smf",
    "df = pd.DataFrame({'x': np.arange(1.0, 20), 'y': np.arange(1.0, 20) ** 1.5})",
    "def double_it(v):\n    return 2 * v",
    "model = smf.ols('y ~ double_it(x) + np.log(x)', df).fit()\nn = 3",
    "print(n)",
]


def test_a_value_loading_beside_a_formula_model_that_reads_the_namespace(
    folder: Path,
) -> None:
    """The edited cell reads ``n`` alone (no library): its entry also holds a formula
    model, which evaluates ``np.log(x)`` in the namespace as it loads. The load imports
    statsmodels: the waiting imports are made first, as a plain run had them. It met
    no ``np``, the load failed, and the cell failed on ``n``'s stand-in."""
    assert _three_runs(folder, FORMULA, "print(n + 1)")[2] == ["restored"] * 4 + ["ran"]
