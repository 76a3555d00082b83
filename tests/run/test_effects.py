"""What a restored cell changed outside its namespace comes back: process settings, the
working directory, files it wrote or deleted; what cannot come back (module state, a
handler that cannot be made again) makes the cell run every time, and ``why`` says so.

Each "restart" is a fresh InteractiveShell on the same store, with the process-wide
states set back to what they were when the test started, as in a new kernel."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.default import set_default_cache
from nbcache.effects import register, unregister
from nbcache.run import files
from nbcache.run.effects import Effects, forget_seeds, restore_state
from tests.shells import close_shell, new_shell

MARK = "with open('runs', 'a') as _f:\n    _f.write('x')\n"


class Kernels:
    """Shells one after another on one store, each as a restarted kernel."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shell: InteractiveShell | None = None
        self.fresh = Effects.now()
        self.handlers = list(logging.root.handlers)

    def restart(self) -> InteractiveShell:
        self.close()
        set_default_cache(None)
        self.reset()
        self.shell = new_shell(self.root)
        return self.shell

    def reset(self) -> None:
        os.chdir(self.root)
        restore_state(self.fresh)
        logging.root.handlers[:] = self.handlers
        forget_seeds()
        sys.modules.pop("mymod", None)

    def close(self) -> None:
        if self.shell is not None:
            close_shell(self.shell)
            self.shell = None

    def run(self, cell: str) -> Any:
        assert self.shell is not None
        result = self.shell.run_cell(cell)
        assert result.error_before_exec is None and result.error_in_exec is None, result
        return result.result

    def out(self, cell: str, capsys: pytest.CaptureFixture[str]) -> str:
        capsys.readouterr()
        self.run(cell)
        return capsys.readouterr().out

    def why(self) -> str:
        assert self.shell is not None
        magics = self.shell.magics_manager.registry["NbcacheMagics"]
        return "\n".join(magics.cells.why())  # type: ignore[attr-defined]

    def runs(self) -> int:
        marker = self.root / "runs"
        n = len(marker.read_text()) if marker.exists() else 0
        marker.unlink(missing_ok=True)
        return n


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernels]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    runs = Kernels(tmp_path)
    yield runs
    runs.close()
    runs.reset()


SETTINGS = (
    "%%cache\nimport decimal, logging, sys, warnings\nimport numpy as np, pandas as pd\n"
    + MARK
    + "np.set_printoptions(precision=2)\npd.set_option('display.max_columns', 5)\n"
    "warnings.simplefilter('ignore')\nsys.setrecursionlimit(4321)\n"
    "decimal.getcontext().prec = 5\nlogging.root.setLevel(logging.INFO)\n"
    "logging.root.addHandler(logging.StreamHandler())\n"
)
SHOW = (
    "import warnings\nwarnings.warn('shown?')\n"
    "print(np.array([1 / 3]), pd.get_option('display.max_columns'), "
    "sys.getrecursionlimit(), decimal.Decimal(1) / 7, logging.root.level, "
    "[type(h).__name__ for h in logging.root.handlers if type(h) is logging.StreamHandler])"
)


def test_settings_a_restored_cell_made_are_made_again(
    kernels: Kernels, capsys: pytest.CaptureFixture[str]
) -> None:
    kernels.restart()
    kernels.run(SETTINGS)
    plain = kernels.out(SHOW, capsys)
    assert "[0.33] 5 4321 0.14286 20 ['StreamHandler']" in plain
    assert kernels.runs() == 1
    kernels.restart()
    kernels.run(SETTINGS)
    assert kernels.runs() == 0  # restored
    assert kernels.out(SHOW, capsys) == plain
    assert np.get_printoptions()["precision"] == 2
    assert pd.get_option("display.max_columns") == 5


def test_a_setting_changed_upstream_is_a_miss_not_a_stale_output(
    kernels: Kernels, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = "%%cache\n" + MARK + "print(np.array([1 / 3]))\n"
    kernels.restart()
    kernels.run("%%cache\nimport numpy as np\nnp.set_printoptions(precision=2)")
    assert "[0.33]" in kernels.out(shown, capsys)
    kernels.restart()
    kernels.run("%%cache\nimport numpy as np\nnp.set_printoptions(precision=3)")
    assert "[0.333]" in kernels.out(shown, capsys)
    assert kernels.runs() == 2
    assert "setting" in kernels.why()


def test_the_working_directory_comes_back(kernels: Kernels) -> None:
    (kernels.root / "data").mkdir()
    (kernels.root / "data" / "table.txt").write_text("1 2 3")
    cell = "%%cache\nimport os\nos.chdir('data')\nstep = 1\n"
    kernels.restart()
    kernels.run(cell)
    kernels.run("text = open('table.txt').read()")
    kernels.restart()
    kernels.run(cell)
    kernels.run("text = open('table.txt').read()")
    assert os.getcwd() == str(kernels.root / "data")


def test_files_written_come_back_and_deleted_ones_go(kernels: Kernels) -> None:
    (kernels.root / "old.txt").write_text("old")
    cell = (
        "%%cache\nimport os\n" + MARK + "os.makedirs('out', exist_ok=True)\n"
        "open('out/result.txt', 'w').write('hello')\nos.remove('old.txt')\nn = 1\n"
    )
    kernels.restart()
    kernels.run(cell)
    made = (kernels.root / "out" / "result.txt").stat().st_mtime_ns
    (kernels.root / "out" / "result.txt").unlink()
    (kernels.root / "out").rmdir()
    (kernels.root / "old.txt").write_text("old")
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 1  # the second run restored
    assert (kernels.root / "out" / "result.txt").read_text() == "hello"
    assert (kernels.root / "out" / "result.txt").stat().st_mtime_ns == made
    assert not (kernels.root / "old.txt").exists()
    # nothing written but the cell's own file, in the folder it wrote to
    assert {p.name for p in kernels.root.iterdir()} - {"default-store", ".nbcache"} == {"out"}
    assert [p.name for p in (kernels.root / "out").iterdir()] == ["result.txt"]


def test_a_file_too_large_to_keep_makes_the_cell_run_again(
    kernels: Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "KEPT_WRITE", 10)
    cell = "%%cache\n" + MARK + "open('big.txt', 'w').write('x' * 100)\nn = 1\n"
    kernels.restart()
    kernels.run(cell)
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 1  # unchanged: restored
    (kernels.root / "big.txt").unlink()
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 1 and (kernels.root / "big.txt").read_text() == "x" * 100
    assert "too large" in kernels.why()


def test_a_file_appended_to_is_a_log_not_restored(kernels: Kernels) -> None:
    cell = "%%cache\n" + MARK + "n = 1\n"
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 1
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 0  # neither run again nor its log written back


def test_module_state_changed_by_a_cell_makes_it_run_every_time(
    kernels: Kernels, capsys: pytest.CaptureFixture[str]
) -> None:
    (kernels.root / "mymod.py").write_text("CONFIG = {}\n")
    cell = "%%cache\nimport mymod\n" + MARK + "mymod.CONFIG['x'] = 1\n"
    kernels.restart()
    kernels.run(cell)
    assert "{'x': 1}" in kernels.out("print(mymod.CONFIG)", capsys)
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 2
    assert "{'x': 1}" in kernels.out("print(mymod.CONFIG)", capsys)
    assert "mymod.CONFIG" in kernels.why()


def test_a_variable_a_module_holds_changed_in_place_runs_every_time(
    kernels: Kernels, capsys: pytest.CaptureFixture[str]
) -> None:
    (kernels.root / "mymod.py").write_text("CONFIG = {}\ndef get():\n    return CONFIG\n")
    kernels.restart()
    kernels.run("from mymod import CONFIG, get")
    kernels.run("%%cache\n" + MARK + "CONFIG['x'] = 1\n")
    assert "mymod.CONFIG" in kernels.why()
    kernels.restart()
    kernels.run("from mymod import CONFIG, get")
    kernels.run("%%cache\n" + MARK + "CONFIG['x'] = 1\n")
    assert kernels.runs() == 2
    assert "{'x': 1}" in kernels.out("print(get())", capsys)


def test_a_submodule_imported_on_first_use_is_no_change_of_module_state(
    kernels: Kernels,
) -> None:
    """numpy imports ``numpy.random`` on first use (``np.random.seed``): the attribute that
    appears is an import, not state the cell changed, and the cell restores."""
    package = kernels.root / "lazypkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import importlib\n\ndef __getattr__(name):\n"
        "    return importlib.import_module(f'lazypkg.{name}')\n"
    )
    (package / "sub.py").write_text("VALUE = 3\n")
    cell = "%%cache\nimport lazypkg\n" + MARK + "v = lazypkg.sub.VALUE\n"
    try:
        for _ in range(2):
            for name in ("lazypkg", "lazypkg.sub"):
                sys.modules.pop(name, None)
            kernels.restart()
            kernels.run(cell)
            assert kernels.shell is not None and kernels.shell.user_ns["v"] == 3
        why = kernels.why()
        assert kernels.runs() == 1, why
        assert "module" not in why
    finally:
        for name in ("lazypkg", "lazypkg.sub"):
            sys.modules.pop(name, None)


def test_what_an_import_sets_is_no_setting_the_cell_changed(kernels: Kernels) -> None:
    """A library that adds a warnings filter as it loads: a cell that only imports it
    changes no setting (a later cell still restores); one that sets a filter of its own
    after the import does (the later cell runs again)."""
    (kernels.root / "noisylib.py").write_text(
        "import warnings\nwarnings.filterwarnings('ignore', message='noisylib says')\n"
    )
    later = "%%cache\n" + MARK + "x = 1\n"
    try:
        for first, runs in (
            (None, 1),
            ("%%cache\nimport noisylib\n", 0),
            ("%%cache\nimport noisylib, warnings\nwarnings.filterwarnings('ignore', 'mine')\n", 1),
        ):
            sys.modules.pop("noisylib", None)
            kernels.restart()
            if first is not None:
                kernels.run(first)
            kernels.run(later)
            assert kernels.runs() == runs, (first, kernels.why())
    finally:
        sys.modules.pop("noisylib", None)


def test_what_a_library_call_imports_and_sets_comes_back(kernels: Kernels) -> None:
    """A cell that imports a library and calls it, where the call imports a module that sets
    state (matplotlib's first figure loads the inline backend, which turns ``interactive``
    on): that state is the call's, which a restore does not make, so it comes back with the
    cell. Only the cell's own import statements are the library's defaults."""
    package = kernels.root / "lazyset"
    package.mkdir()
    (package / "__init__.py").write_text("def go():\n    from . import side\n")
    (package / "side.py").write_text("import os\nos.environ['NBCACHE_TEST_LAZYSET'] = 'on'\n")
    cell = "%%cache\nimport lazyset\n" + MARK + "lazyset.go()\n"
    try:
        for _ in range(2):
            for name in ("lazyset", "lazyset.side"):
                sys.modules.pop(name, None)
            kernels.restart()
            assert "NBCACHE_TEST_LAZYSET" not in os.environ
            kernels.run(cell)
            assert os.environ.get("NBCACHE_TEST_LAZYSET") == "on", kernels.why()
        assert kernels.runs() == 1, kernels.why()
    finally:
        os.environ.pop("NBCACHE_TEST_LAZYSET", None)
        for name in ("lazyset", "lazyset.side"):
            sys.modules.pop(name, None)


def test_a_handler_that_cannot_be_made_again_makes_the_cell_run_every_time(
    kernels: Kernels,
) -> None:
    cell = (
        "%%cache\nimport logging\n" + MARK + "class Mine(logging.Handler):\n"
        "    def emit(self, record): pass\nlogging.root.addHandler(Mine())\n"
    )
    kernels.restart()
    kernels.run(cell)
    assert "root logger" in kernels.why()
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 2


def test_a_registered_state_set_by_a_cell_comes_back(kernels: Kernels) -> None:
    import tests.run.test_effects as me

    register("test.mode", lambda: me.Mode.value, lambda v: setattr(me.Mode, "value", v))
    try:
        cell = "%%cache\nimport tests.run.test_effects as t\n" + MARK + "t.set_mode('fancy')\n"
        kernels.restart()
        kernels.run(cell)
        assert Mode.value == "fancy"
        Mode.value = "plain"  # a new kernel
        kernels.restart()
        kernels.run(cell)
        assert kernels.runs() == 1 and Mode.value == "fancy"
    finally:
        unregister("test.mode")
        Mode.value = "plain"


class Mode:
    """A library's global mode, kept on a class (a state registered with nbcache)."""

    value = "plain"


def set_mode(mode: str) -> None:
    Mode.value = mode


def test_registering_a_name_twice_says_what_to_do() -> None:
    register("test.twice", lambda: 1, lambda v: None)
    try:
        with pytest.raises(Exception, match="replace=True"):
            register("test.twice", lambda: 1, lambda v: None)
    finally:
        unregister("test.twice")


def test_capturing_reads_only_loaded_modules_and_stays_cheap() -> None:
    """Each read is bounded by the states registered: count them, not time them."""
    now = Effects.now()
    assert "torch.flags" not in now.values  # torch is not imported here
    assert {"numpy.printoptions", "pandas.options", "warnings", "cwd"} <= set(now.values)


# A loop over numbers read from a file that fails at a bad one (the file is no input of
# the cell's key: it is checked after, as an entry's files are).
SUM_FILE = """\
from nbcache import progress
with open('numbers.txt') as f:
    numbers = [int(x) for x in f.read().split()]
total = 0
for n in progress(numbers):
    if n < 0:
        raise ValueError(f"bad number {n}")
    total += n
    __import__('time').sleep(0.002)
print('total', total)
"""


def test_a_resume_after_the_file_a_loop_read_changed_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbcache.cache.core import Cache
    from nbcache.entry.signing import Signer
    from nbcache.run import checkpoint
    from nbcache.run.cell import CellRunner
    from nbcache.run.cellrun import CellOptions
    from nbcache.store import LocalStore
    from tests.run.fake_shell import FakeShell

    os.chdir(tmp_path)
    (tmp_path / "numbers.txt").write_text("1 2 3 4 -5 6 7 8")

    def cells() -> tuple[FakeShell, CellRunner]:
        shell = FakeShell()
        cache = Cache(LocalStore(tmp_path / "store"), signer=Signer(b"secret"))
        return shell, CellRunner(shell, lambda: cache)

    _, first = cells()
    with pytest.raises(ValueError, match="bad number -5"):
        first.run(SUM_FILE, CellOptions(checkpoint=0.0))
    for writer in list(checkpoint._writers.values()):
        writer.wait(10)
    (tmp_path / "numbers.txt").write_text("10 20 30 40 50 60 70 80")  # fixed
    capsys.readouterr()
    shell, again = cells()
    with pytest.warns(Warning, match=r"numbers.txt` changed; the loop starts over"):
        again.run(SUM_FILE, CellOptions(checkpoint=0.0))
    captured = capsys.readouterr()
    assert "total 360" in captured.out  # not 1+2+3+4 of the old file plus the rest
    assert [r for r in shell.reports if r.outcome == "resumed"] == []


def test_a_mutation_through_a_part_of_another_variable_comes_back(
    kernels: Kernels, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = [
        "%%cache\n" + MARK + "d = {'k': [1]}",
        "%%cache\n" + MARK + "inner = d['k']",
        "%%cache\n" + MARK + "inner.append(2)",
    ]
    for _ in range(2):
        kernels.restart()
        for cell in cells:
            kernels.run(cell)
        assert "{'k': [1, 2]}" in kernels.out("print(d)", capsys)
        kernels.run("inner.append(3)")  # still one list, as in the plain run
        assert "{'k': [1, 2, 3]}" in kernels.out("print(d)", capsys)
    assert kernels.runs() == 3  # the second session restored every cell


def test_the_identity_walk_is_bounded() -> None:
    from nbcache.run import sharing

    chain: list[Any] = []
    node = chain
    for _ in range(50_000):
        node.append([])
        node = node[0]
    budget = [sharing.WALK_BUDGET]
    parts = sharing.mutable_parts([chain], budget)
    assert len(parts) == sharing.WALK_BUDGET and budget == [0]


def test_a_folder_gone_since_is_one_line_not_a_silent_restore(kernels: Kernels) -> None:
    (kernels.root / "data").mkdir()
    cell = "%%cache\nimport os\nos.chdir('data')\nstep = 1\n"
    kernels.restart()
    kernels.run(cell)
    os.chdir(kernels.root)
    (kernels.root / "data").rmdir()
    kernels.restart()
    with pytest.warns(Warning, match="the working directory could not be set back"):
        kernels.run(cell)


def test_bytecode_written_by_a_cell_is_no_output_of_it(kernels: Kernels) -> None:
    (kernels.root / "m.py").write_text("X = 1\n")
    cell = "%%cache\nimport py_compile\n" + MARK + "done = bool(py_compile.compile('m.py'))\n"
    kernels.restart()
    kernels.run(cell)
    assert (kernels.root / "__pycache__").is_dir()
    for pyc in (kernels.root / "__pycache__").iterdir():
        pyc.unlink()
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 1 and list((kernels.root / "__pycache__").iterdir()) == []


def test_files_past_the_total_kept_make_the_cell_run_again_when_gone(
    kernels: Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "KEPT_WRITES", 150)
    cell = (
        "%%cache\n" + MARK + "for name in ('a.txt', 'b.txt'):\n"
        "    open(name, 'w').write(name * 25)\n"
    )
    kernels.restart()
    kernels.run(cell)
    (kernels.root / "a.txt").unlink()
    (kernels.root / "b.txt").unlink()
    kernels.restart()
    kernels.run(cell)
    assert kernels.runs() == 2  # one of them was not kept: the cell ran again
    assert (kernels.root / "a.txt").read_text() == "a.txt" * 25
    assert (kernels.root / "b.txt").read_text() == "b.txt" * 25


def test_the_settings_digest_is_the_same_for_equal_values_however_they_share() -> None:
    """A setting read in the process that ran the cell holds one string twice; the same
    setting unpickled from the entry holds two copies: later cells must still hit."""
    from nbcache.run.effects import apply

    register("test.shared", lambda: {}, lambda v: None, keyed=True)
    try:
        forget_seeds()
        once = "left" * 3
        apply({"test.shared": {"a": once, "b": once}})
        first = Effects.now().settings
        forget_seeds()
        apply({"test.shared": {"a": "".join(["left"] * 3), "b": "".join(["left"] * 3)}})
        assert Effects.now().settings == first
    finally:
        unregister("test.shared")
        forget_seeds()


def test_a_backend_not_chosen_yet_is_no_setting() -> None:
    import matplotlib

    from nbcache.run.states import BUILT_IN

    rc = next(s for s in BUILT_IN if s.name == "rcParams")
    saved = dict.__getitem__(matplotlib.rcParams, "backend")
    try:
        dict.__setitem__(matplotlib.rcParams, "backend", object())  # as before any plot
        assert "backend" not in rc.read()
    finally:
        dict.__setitem__(matplotlib.rcParams, "backend", saved)


def test_a_cell_that_imports_matplotlib_and_draws_restores_in_a_new_kernel(
    tmp_path: Path,
) -> None:
    """matplotlib's settings are an input of a cell that draws, except when the cell itself
    imported matplotlib: then they were its defaults, which the next kernel, which has
    not imported it yet when it looks the cell up, gets the same way."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import os, sys
        from IPython.core.interactiveshell import InteractiveShell
        assert "matplotlib" not in sys.modules
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "nbcache")
        shell.run_cell(
            "%%cache\\nimport matplotlib.pyplot as plt\\nline = plt.plot([1, 2, 3])"
        )
        """
    )
    env = {
        **os.environ,
        "NBCACHE_DIR": str(tmp_path / "store"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    # as in a kernel: the inline backend, which shows the figure the cell drew
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    outs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        for _ in range(2)
    ]
    assert all(out.returncode == 0 for out in outs), [out.stderr for out in outs]
    assert "nbcache: computed" in outs[0].stdout
    assert "nbcache: restored" in outs[1].stdout, outs[1].stdout


def test_matplotlib_running_interactively_is_no_input_of_a_cell_that_draws() -> None:
    """IPython turns ``interactive`` on when a cell first draws, which a restored cell never
    does: a later cell that draws restores all the same; a setting of the look does not."""
    import matplotlib

    from nbcache.run.effects import stale

    inputs = Effects.now().inputs({}, seeded=False, drew=True)
    assert "rcParams" in inputs
    before = dict.copy(matplotlib.rcParams)
    try:
        matplotlib.rcParams["interactive"] = not before["interactive"]
        assert stale(inputs) == []
        matplotlib.rcParams["lines.linewidth"] = before["lines.linewidth"] + 1
        assert stale(inputs) != []
    finally:
        matplotlib.rcParams.update(before)
