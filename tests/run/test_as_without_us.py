"""A cached cell behaves as it does without the magic, on a miss and on a hit in a new
shell: no result where there was none, ``;`` hides the result, effects outside the
namespace come back, writes through views reach their base, pseudo-files are no inputs."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.default import set_default_cache
from nbcache.run.effects import forget_seeds
from tests.shells import close_shell, new_shell


class Shells:
    """Shells one after another on one store: each new one is a restarted kernel."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shell: InteractiveShell | None = None

    def restart(self) -> InteractiveShell:
        if self.shell is not None:
            close_shell(self.shell)
        set_default_cache(None)  # a new kernel starts with nothing in memory
        forget_seeds()  # and with generators nobody seeded
        self.shell = new_shell(self.root)
        return self.shell

    def run(self, cell: str) -> Any:
        assert self.shell is not None
        result = self.shell.run_cell(cell)
        assert result.error_before_exec is None and result.error_in_exec is None, result
        return result.result


@pytest.fixture
def shells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shells]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    runs = Shells(tmp_path)
    yield runs
    if runs.shell is not None:
        close_shell(runs.shell)


def _runs(root: Path) -> int:
    marker = root / "runs"
    return len(marker.read_text()) if marker.exists() else 0


BODY_MARK = "with open('runs', 'a') as _f:\n    _f.write('x')\n"


def test_a_hit_shows_no_result_where_there_was_none(shells: Shells) -> None:
    """A cell that ends with a statement has no result, on the miss and on the hit."""
    cell = "%%cache\n" + BODY_MARK + "a = 1\n"
    shells.restart()
    assert shells.run(cell) is None
    shells.restart()
    assert shells.run(cell) is None and _runs(shells.root) == 1


def test_a_trailing_semicolon_hides_the_result(shells: Shells) -> None:
    """``x;`` at the end shows nothing, as without the magic; ``x`` shows it."""
    shells.restart()
    assert shells.run("%%cache\nx = 41\nx + 1;") is None
    assert shells.run("%%cache\nx = 41\nx + 1  # shown") == 42
    shells.restart()
    assert shells.run("%%cache\nx = 41\nx + 1;") is None


def test_a_cell_with_a_line_magic_runs_every_time(shells: Shells) -> None:
    """A line magic acts outside the namespace (here an environment variable): the cell
    runs again after a restart instead of restoring nothing."""
    cell = "%%cache\n" + BODY_MARK + "%env NBCACHE_TEST_MAGIC=on\ny = 2\n"
    try:
        shells.restart()
        shells.run(cell)
        del os.environ["NBCACHE_TEST_MAGIC"]
        shells.restart()
        shells.run(cell)
        assert os.environ["NBCACHE_TEST_MAGIC"] == "on" and _runs(shells.root) == 2
    finally:
        os.environ.pop("NBCACHE_TEST_MAGIC", None)


def test_seeded_draws_restore_and_leave_the_generator_as_a_plain_run(shells: Shells) -> None:
    """After ``np.random.seed(0)``, a cached cell that draws restores its numbers, and the
    next plain cell draws what it would have drawn without the cache."""
    setup = "import numpy as np\nnp.random.seed(0)\n"
    cell = "%%cache\n" + BODY_MARK + "b = np.random.rand(3)\n"
    shells.restart()
    shells.run(setup)
    shells.run(cell)
    first = (shells.shell.user_ns["b"].copy(), np.random.rand())  # type: ignore[union-attr]
    shells.restart()
    shells.run(setup)
    shells.run(cell)
    again = (shells.shell.user_ns["b"].copy(), np.random.rand())  # type: ignore[union-attr]
    assert _runs(shells.root) == 1
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]


def test_another_seed_before_a_drawing_cell_is_a_miss(shells: Shells) -> None:
    """The generator's state is an input of a cell that draws: another seed upstream makes
    it compute again, never restore numbers drawn from the old seed."""
    cell = "%%cache\n" + BODY_MARK + "b = np.random.rand()\n"
    shells.restart()
    shells.run("import numpy as np\nnp.random.seed(0)")
    shells.run(cell)
    old = shells.shell.user_ns["b"]  # type: ignore[union-attr]
    shells.run("np.random.seed(1)")
    shells.run(cell)
    assert _runs(shells.root) == 2 and shells.shell.user_ns["b"] != old  # type: ignore[union-attr]


def test_the_random_module_state_comes_back(shells: Shells) -> None:
    """The same for the ``random`` module: a cell that seeds and draws restores, and the
    module's generator is left where the plain run left it."""
    cell = "%%cache\nimport random\nrandom.seed(7)\n" + BODY_MARK + "r = random.random()\n"
    shells.restart()
    shells.run(cell)
    after = random.random()
    shells.restart()
    random.seed(12345)  # a fresh kernel's generator is anywhere
    shells.run(cell)
    assert _runs(shells.root) == 1 and random.random() == after


def test_matplotlib_settings_come_back(shells: Shells) -> None:
    """A cell that sets rcParams (a style) sets them again when it restores."""
    import matplotlib

    saved = dict.copy(matplotlib.rcParams)
    cell = (
        "%%cache\n"
        + BODY_MARK
        + "import matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 7.5\n"
    )
    try:
        shells.restart()
        shells.run(cell)
        matplotlib.rcParams["lines.linewidth"] = 1.0
        shells.restart()
        shells.run(cell)
        assert _runs(shells.root) == 1 and matplotlib.rcParams["lines.linewidth"] == 7.5
    finally:
        dict.update(matplotlib.rcParams, saved)


def test_sys_path_comes_back(shells: Shells, tmp_path: Path) -> None:
    """A cell that puts a folder on sys.path puts it there again when it restores."""
    cell = "%%cache\n" + BODY_MARK + f"import sys\nsys.path.append({str(tmp_path / 'lib')!r})\n"
    shells.restart()
    shells.run(cell)
    sys.path.remove(str(tmp_path / "lib"))
    shells.restart()
    shells.run(cell)
    assert _runs(shells.root) == 1 and str(tmp_path / "lib") in sys.path


def test_a_write_through_a_view_reaches_its_base(shells: Shells) -> None:
    """``sub = x[:1]`` in one cell and ``sub[0] = 99`` in the next: after a restart the
    restored ``x`` has the 99, as it had in the plain run."""
    shells.restart()
    shells.run("%%cache\nimport numpy as np\nx = np.arange(4)\nsub = x[:1]")
    shells.run("%%cache\nsub[0] = 99")
    assert shells.shell.user_ns["x"][0] == 99  # type: ignore[union-attr]
    shells.restart()
    shells.run("%%cache\nimport numpy as np\nx = np.arange(4)\nsub = x[:1]")
    shells.run("%%cache\nsub[0] = 99")
    assert shells.shell.user_ns["x"].tolist() == [99, 1, 2, 3]  # type: ignore[union-attr]


def test_reading_proc_is_no_input(shells: Shells) -> None:
    """A cell that reads /proc/self/status restores in the next kernel."""
    cell = "%%cache\n" + BODY_MARK + "status = open('/proc/self/status').read()[:4]\n"
    shells.restart()
    shells.run(cell)
    shells.restart()
    shells.run(cell)
    assert _runs(shells.root) == 1


def test_a_cell_setting_a_secret_is_never_stored(shells: Shells) -> None:
    """A cell that puts a secret-looking variable in the environment is not stored (the
    store would keep it): it runs again, with one warning."""
    cell = "%%cache\n" + BODY_MARK + "import os\nos.environ['NBCACHE_TEST_TOKEN'] = 'x'\n"
    try:
        shells.restart()
        with pytest.warns(UserWarning, match="looks like a secret"):
            shells.run(cell)
        del os.environ["NBCACHE_TEST_TOKEN"]  # as in a new kernel
        shells.restart()
        with pytest.warns(UserWarning, match="looks like a secret"):
            shells.run(cell)
        assert _runs(shells.root) == 2
    finally:
        os.environ.pop("NBCACHE_TEST_TOKEN", None)


def test_pager_output_is_recorded_and_replayed(shells: Shells) -> None:
    """What a cell sends to the pager is paged again on a hit, as the plain run paged it."""
    cell = "%%cache\n" + BODY_MARK + "from IPython.core import page\npage.page('the report')\n"
    seen: list[Any] = []

    def pager(shell: Any, data: Any, start: int = 0, **kwargs: Any) -> None:
        seen.append(data)

    for _ in range(2):
        shell = shells.restart()
        shell.set_hook("show_in_pager", pager, 50)  # a kernel's payload pager stands here
        shells.run(cell)
    assert _runs(shells.root) == 1 and seen == ["the report", "the report"]


def test_a_warning_in_a_cell_stores_no_registry(shells: Shells) -> None:
    """``warnings`` puts ``__warningregistry__`` in the namespace a warning came from; it is
    not one of the cell's variables, and a hit does not bring it back."""
    shells.restart()
    shells.run("%%cache\nimport warnings\nwarnings.warn('careful')\nw = 1")
    shells.shell.user_ns.pop("__warningregistry__", None)  # type: ignore[union-attr]
    shells.restart()
    shells.run("%%cache\nimport warnings\nwarnings.warn('careful')\nw = 1")
    assert "__warningregistry__" not in shells.shell.user_ns  # type: ignore[union-attr]


def test_a_last_expression_of_none_shows_nothing(
    shells: Shells, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell ending in ``print(...)`` (its value None) shows no ``Out``, on a miss or a hit."""
    for _ in range(2):
        shells.restart()
        capsys.readouterr()
        shells.run("%%cache\nz = 3\nprint(z)")
        assert "Out[" not in capsys.readouterr().out
    shells.run("%%cache\nz")  # the same shell shows a value that is there
    assert "Out[" in capsys.readouterr().out


def test_a_formula_model_calling_a_notebook_function_restores(shells: Shells) -> None:
    """A statsmodels model fitted from a formula that calls a notebook function re-reads
    the formula while it unpickles, in its caller's frames: those see the notebook."""
    setup = "import numpy as np, pandas as pd\nimport statsmodels.formula.api as smf\n"
    setup += "def double_it(x):\n    return 2 * x\n"
    cell = (
        "%%cache\n"
        + BODY_MARK
        + "df = pd.DataFrame({'y': np.arange(9.0), 'x': np.arange(9.0) ** 1.5})\n"
        "fit = smf.ols('y ~ double_it(x)', data=df).fit()\n"
    )
    for _ in range(2):
        shells.restart()
        shells.run(setup)
        shells.run(cell)
    assert _runs(shells.root) == 1
    assert shells.shell.user_ns["fit"].params.index.tolist()[1] == "double_it(x)"  # type: ignore[union-attr]


def test_an_import_that_draws_at_import_still_restores(shells: Shells, tmp_path: Path) -> None:
    """A cell of imports only restores after a restart even if importing the library drew
    from the global generator (scikit-learn's first import does): what an import binds
    cannot depend on the generator's state."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "draws_at_import.py").write_text("import random\nTOKEN = random.random()\n")
    sys.path.insert(0, str(lib))
    cell = "%%cache\nfrom draws_at_import import TOKEN as first\n"
    try:
        for n in range(2):
            sys.modules.pop("draws_at_import", None)
            random.seed(n)  # each kernel's generator starts elsewhere
            shells.restart()
            shells.run(cell)
            drawn = shells.shell.user_ns["first"]  # type: ignore[union-attr]
            if n == 0:
                token = drawn
        assert drawn == token  # restored: the second kernel's import did not run it
    finally:
        sys.modules.pop("draws_at_import", None)


def test_a_result_that_will_not_pickle_keeps_the_rest_stored(
    shells: Shells, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell whose result cannot be pickled (a vectorized ufunc, as seaborn plots hold) is
    still stored: a restart restores its variables and shows its result as it was shown."""
    cell = "%%cache\n" + BODY_MARK + "import numpy as np\nv = 41\nnp.frompyfunc(str, 1, 1)"
    shown = []
    for _ in range(2):
        shells.restart()
        capsys.readouterr()
        shells.run(cell)
        shown.append([line for line in capsys.readouterr().out.splitlines() if "Out[" in line])
    assert _runs(shells.root) == 1 and shells.shell.user_ns["v"] == 41  # type: ignore[union-attr]
    assert shown[0] == shown[1] and "ufunc" in shown[0][0]


def test_an_unseeded_simulation_restores(shells: Shells) -> None:
    """A cell drawing from a generator nobody seeded restores after a restart: any sample
    is as good as another, and the cache is there to keep the one computed."""
    cell = "%%cache\n" + BODY_MARK + "import numpy as np\nsample = np.random.rand(3)\n"
    shells.restart()
    shells.run("import numpy as np")
    shells.run(cell)
    first = shells.shell.user_ns["sample"].copy()  # type: ignore[union-attr]
    shells.restart()
    shells.run("import numpy as np")
    shells.run(cell)
    assert _runs(shells.root) == 1
    assert np.array_equal(shells.shell.user_ns["sample"], first)  # type: ignore[union-attr]


def test_a_seed_after_other_work_in_the_cell_still_restores(shells: Shells) -> None:
    """``x = np.arange(n)`` then ``np.random.seed(1)`` in one cell, nothing seeded before:
    the generator's earlier state is no input, so the cell restores."""
    cell = (
        "%%cache\n" + BODY_MARK + "x = np.arange(5)\nnp.random.seed(1)\nnoise = np.random.rand()\n"
    )
    for _ in range(2):
        shells.restart()
        shells.run("import numpy as np")
        np.random.rand()  # each kernel's generator is somewhere else
        shells.run(cell)
    assert _runs(shells.root) == 1


FORGETFUL = '''
class Forgetful:
    """Like scikit-learn's Bunch: unpickling drops an attribute __init__ set."""

    def __init__(self, data):
        self.data = data
        self._internal = {}

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.data = state["data"]
'''


def _forgetful(tmp_path: Path) -> None:
    lib = tmp_path / "forgetful_lib"
    lib.mkdir(exist_ok=True)
    (lib / "forgetful.py").write_text(FORGETFUL)
    if str(lib) not in sys.path:
        sys.path.insert(0, str(lib))


def test_a_value_whose_digest_drifts_through_pickle_still_keys_later_cells(
    shells: Shells, tmp_path: Path
) -> None:
    """A restored value that unpickles slightly different (its digest drifts) keys the
    cells reading it as the value it was made as: they restore, not recompute."""
    _forgetful(tmp_path)
    make = "%%cache\nfrom forgetful import Forgetful\nthing = Forgetful([1, 2, 3])\n"
    read = "%%cache\n" + BODY_MARK + "total = sum(thing.data)\n"
    for _ in range(2):
        shells.restart()
        shells.run(make)
        shells.run(read)
    assert _runs(shells.root) == 1 and shells.shell.user_ns["total"] == 6  # type: ignore[union-attr]


def test_a_drifted_value_changed_after_its_restore_is_a_miss(
    shells: Shells, tmp_path: Path
) -> None:
    """The same value changed in place after it was restored: the cell reading it runs."""
    _forgetful(tmp_path)
    make = "%%cache\nfrom forgetful import Forgetful\nthing = Forgetful([1, 2, 3])\n"
    read = "%%cache\n" + BODY_MARK + "total = sum(thing.data)\n"
    shells.restart()
    shells.run(make)
    shells.run(read)
    shells.restart()
    shells.run(make)
    shells.run("thing.data.append(4)")
    shells.run(read)
    assert _runs(shells.root) == 2 and shells.shell.user_ns["total"] == 10  # type: ignore[union-attr]
