"""``run/lazy.py``: in a whole-notebook run, a module a restored cell imported (or a
library's function it bound) is not imported while cells only restore; before a cell
runs, every module restored cells imported is, in the notebook's order, as a plain run
had them; and every key is the key an eager restore gives."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.keys.standin import StandIn
from nbcache.run import lazyimports
from nbcache.run.auto import AutoMode
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell

# colorsys and wave: standard modules nothing else here imports, so a test can forget them
NOTEBOOK = [
    ("imports", "import colorsys\nimport json\nfrom wave import open as wave_open"),
    ("data", "a = list(range(10))"),
    ("helper", "def hsv(x):\n    return colorsys.rgb_to_hsv(*x)"),
    ("uses", "b = json.dumps(a)"),
    ("last", "c = len(a)"),
]
EDITED = ("last", "c = len(a) + 1")


def _forget(*names: str) -> None:
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def _fresh_modules() -> None:
    _forget("colorsys", "wave")


def _session(root: Path, lazy: bool) -> tuple[FakeShell, CellRunner]:
    shell = FakeShell()
    shell.user_ns["__name__"] = "__main__"  # as a kernel's: notebook functions load live
    cache = Cache(LocalStore(root), signer=Signer(b"secret"))
    cells = CellRunner(shell, lambda: cache)
    cells.auto = AutoMode(lazy=lazy, min_seconds=0)  # every cell stored
    return shell, cells


def _run(cells: CellRunner, notebook: list[tuple[str, str]]) -> list[str]:
    """Run ``notebook``; the key of each cell."""
    keys = []
    for cell_id, source in notebook:
        cells.shell.cell_id = cell_id
        run = cells.decide(source, CellOptions(auto=True)).run
        assert run is not None
        keys.append(run.key.key)
        cells.run(source, CellOptions(auto=True))
    return keys


def _notebook_run(
    root: Path, lazy: bool, notebook: list[tuple[str, str]]
) -> tuple[FakeShell, CellRunner, list[str]]:
    _forget("colorsys", "wave")  # a fresh kernel
    shell, cells = _session(root, lazy)
    return shell, cells, _run(cells, notebook)


def test_restoring_cells_imports_nothing_until_a_cell_runs(tmp_path: Path) -> None:
    _notebook_run(tmp_path, False, NOTEBOOK)
    shell, cells, lazy_keys = _notebook_run(tmp_path, True, NOTEBOOK)
    assert "colorsys" not in sys.modules and "wave" not in sys.modules
    assert type(shell.user_ns["colorsys"]) is StandIn
    assert type(shell.user_ns["wave_open"]) is StandIn
    assert shell.user_ns["json"] is sys.modules["json"]  # loaded already: bound at once
    auto = cells.auto
    assert auto is not None
    assert [o["outcome"] for o in auto.outcomes] == ["restored"] * 5
    assert lazy_keys == _notebook_run(tmp_path, False, NOTEBOOK)[2]


def test_an_edited_cell_that_reaches_no_library_leaves_the_imports_waiting(
    tmp_path: Path,
) -> None:
    """It reads a list of ints: no registration an import made can show there."""
    _notebook_run(tmp_path, False, NOTEBOOK)
    edited = [*NOTEBOOK[:-1], EDITED]
    shell, cells, lazy_keys = _notebook_run(tmp_path, True, edited)
    assert shell.user_ns["c"] == 11
    assert "colorsys" not in sys.modules and "wave" not in sys.modules
    assert type(shell.user_ns["colorsys"]) is StandIn
    auto = cells.auto
    assert auto is not None
    assert [o["outcome"] for o in auto.outcomes] == ["restored"] * 4 + ["ran"]
    # every key is the one an eager restore gives (the edited cell's too)
    _, _, eager_keys = _notebook_run(tmp_path, False, edited)
    assert lazy_keys == eager_keys


LIBRARY_REACHED = [
    "import math\nc = len(a)",  # an import of its own
    "c = len(frac)",  # a value holding a library's object
    "c = importer()",  # a notebook function that imports when called
    "c = hsv((0.2, 0.4, 0.4))",  # a notebook function reading a module
    "c = len(a) + __import__('math').floor(1.5)",
    "c = [len(a), get_shell]",  # a library's function
]


@pytest.mark.parametrize("cell", LIBRARY_REACHED)
def test_an_edited_cell_that_may_reach_a_library_runs_after_every_import(
    tmp_path: Path, cell: str
) -> None:
    """Even one that reads none of the modules: an import may have registered into a
    library the cell reaches some other way (see the registering test below)."""
    notebook = [
        *NOTEBOOK[:-1],
        ("frac", "from fractions import Fraction\nfrac = [Fraction(1, 3)]"),
        ("importer", "def importer():\n    import math\n    return 1"),
        ("shell", "from IPython import get_ipython as get_shell"),
        ("last", "c = len(a)"),
    ]
    _notebook_run(tmp_path, False, notebook)
    shell, cells, _ = _notebook_run(tmp_path, True, [*notebook[:-1], ("last", cell)])
    assert shell.user_ns["colorsys"] is sys.modules["colorsys"]
    assert shell.user_ns["wave_open"] is sys.modules["wave"].open
    auto = cells.auto
    assert auto is not None
    assert [o["outcome"] for o in auto.outcomes][-1] == "ran"


def test_a_running_cell_that_reaches_a_module_gets_the_module_a_plain_run_gives(
    tmp_path: Path,
) -> None:
    _notebook_run(tmp_path, False, NOTEBOOK)
    shell, cells, _ = _notebook_run(tmp_path, True, NOTEBOOK)
    assert "colorsys" not in sys.modules
    # through a notebook function's globals
    keys = _run(cells, [("call", "h = hsv((0.2, 0.4, 0.4))")])
    assert shell.user_ns["colorsys"] is sys.modules["colorsys"]
    assert shell.user_ns["h"] == sys.modules["colorsys"].rgb_to_hsv(0.2, 0.4, 0.4)
    assert shell.user_ns["wave_open"] is sys.modules["wave"].open
    _, _, eager = _notebook_run(tmp_path, False, [*NOTEBOOK, ("call", "h = hsv((0.2, 0.4, 0.4))")])
    assert eager[-1] == keys[0]


@pytest.mark.parametrize(
    "cell",
    [
        "names = sorted(k for k in globals() if not k.startswith('_'))",
        # an import not made yet may have set environment variables a plain run has
        "import os\nhome = os.environ.get('HOME')",
        # the namespace as a function's or a frame's globals, names it does not write
        "mod = (lambda: 0).__globals__['color' + 'sys']",
        "mod = getattr(hsv, '__glob' + 'als__')['color' + 'sys']",
        "got = getattr(hsv, ''.join(['__glob', 'als__']))",
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
        "    g = e.__traceback__.tb_frame.f_globals",
        # builtins, whose __import__ reaches any library; every class loaded
        "builtin = getattr(print, '__self__')",
        "main = __import__('__main__')",  # whose __dict__ is the namespace
        "loaded = len(object.__subclasses__())",
    ],
)
def test_a_cell_reading_the_namespace_wholesale_imports_everything(
    tmp_path: Path, cell: str
) -> None:
    _notebook_run(tmp_path, False, NOTEBOOK)
    shell, cells, _ = _notebook_run(tmp_path, True, NOTEBOOK)
    _run(cells, [("all", cell)])
    assert shell.user_ns["colorsys"] is sys.modules["colorsys"]
    assert shell.user_ns["wave_open"] is sys.modules["wave"].open
    assert type(shell.user_ns["a"]) is list  # every value loaded too


HASHED = [
    ("imports", "import colorsys"),
    (
        "cls",
        "class Hue:\n    def __init__(self, v):\n        self.v = v\n"
        "    def __hash__(self):\n        return hash(colorsys.rgb_to_hsv(self.v, 0, 0))\n"
        "    def __eq__(self, other):\n        return self.v == other.v",
    ),
    ("data", "hues = {Hue(0.1), Hue(0.2)}"),
    ("last", "n = len(hues)"),
]


def test_a_value_whose_loading_runs_notebook_code_gets_the_waiting_imports_first(
    tmp_path: Path,
) -> None:
    """Unpickling a set calls its members' ``__hash__``: notebook code reading a module
    whose import waits. It met the stand-in: the entry was removed and the cell ran."""
    _notebook_run(tmp_path, False, HASHED)
    shell, cells, _ = _notebook_run(tmp_path, True, HASHED)
    auto = cells.auto
    assert auto is not None
    assert [o["outcome"] for o in auto.outcomes] == ["restored"] * 4
    assert shell.user_ns["colorsys"] is sys.modules["colorsys"]
    assert len(shell.user_ns["hues"]) == 2


def test_a_cell_setting_an_attribute_of_a_module_not_imported_yet_always_runs(
    tmp_path: Path,
) -> None:
    _notebook_run(tmp_path, False, NOTEBOOK)
    _, cells, _ = _notebook_run(tmp_path, True, NOTEBOOK)
    cells.shell.cell_id = "patch"
    decision = cells.decide("colorsys.ONE_THIRD = 0.3", CellOptions(auto=True))
    assert decision.action == "always"


def test_a_package_changed_since_is_imported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _notebook_run(tmp_path, False, NOTEBOOK)
    monkeypatch.setattr(lazyimports, "stamp", lambda where: ("elsewhere", 0, 0, 0))
    shell, _, _ = _notebook_run(tmp_path, True, NOTEBOOK)
    assert shell.user_ns["colorsys"] is sys.modules["colorsys"]


def test_an_import_cell_that_seeds_restores_in_full_but_imports_later(tmp_path: Path) -> None:
    """An entry that changed outside state restores in full (its state must be right
    before the next cell), yet the modules it binds still wait for a cell that needs them."""
    notebook = [
        ("imports", "import colorsys\nimport random\nrandom.seed(3)"),
        ("draw", "r = random.random()"),
    ]
    import random

    _notebook_run(tmp_path, False, notebook)
    shell, cells, lazy_keys = _notebook_run(tmp_path, True, notebook[:1])
    assert "colorsys" not in sys.modules and type(shell.user_ns["colorsys"]) is StandIn
    assert shell.user_ns["random"] is random
    assert random.random() == __import__("random").Random(3).random()  # the seed applied
    random.seed(3)
    _run(cells, [("hsv", "h = colorsys.rgb_to_hsv(0.2, 0.4, 0.4)")])
    assert shell.user_ns["colorsys"] is sys.modules["colorsys"]
    _, _, eager_keys = _notebook_run(tmp_path, False, notebook[:1])
    assert lazy_keys == eager_keys


def test_a_module_whose_import_changed_a_setting_is_imported_on_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that silences a builtin category as it loads: a plain run has the filter
    from that cell on, so the cell's modules come back imported. One that adds a filter
    for its own message alone affects only its own code, which imports it first."""
    (tmp_path / "noisy_lib.py").write_text(
        "import warnings\nwarnings.simplefilter('ignore', FutureWarning)\n"
    )
    (tmp_path / "quiet_lib.py").write_text(
        "import warnings\nwarnings.filterwarnings('ignore', message='quiet_lib says')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(lazyimports, "is_local_module", lambda name: False)  # as if installed
    notebook = [("noisy", "import noisy_lib"), ("quiet", "import quiet_lib")]
    with warnings.catch_warnings():
        _forget("noisy_lib", "quiet_lib")
        _notebook_run(tmp_path / "store", False, notebook)
    with warnings.catch_warnings():
        _forget("noisy_lib", "quiet_lib")
        shell, _, _ = _notebook_run(tmp_path / "store", True, notebook)
        assert shell.user_ns["noisy_lib"] is sys.modules["noisy_lib"]
        assert type(shell.user_ns["quiet_lib"]) is StandIn and "quiet_lib" not in sys.modules


def _plugins(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Libraries whose imports register into another one, as ``hvplot.pandas`` adds an
    accessor to pandas, ``janitor`` DataFrame methods, ``mpl_toolkits.mplot3d`` a
    projection: in the order they are imported."""
    (root / "registry_lib.py").write_text("REGISTERED = []\n")
    for name in ("plugin_a", "plugin_b"):
        (root / f"{name}.py").write_text(
            f"import registry_lib\nregistry_lib.REGISTERED.append({name!r})\n"
        )
    (root / "plugin_pkg").mkdir()
    (root / "plugin_pkg" / "__init__.py").write_text("")
    (root / "plugin_pkg" / "ext.py").write_text(
        "import registry_lib\nregistry_lib.REGISTERED.append('plugin_pkg.ext')\n"
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(lazyimports, "is_local_module", lambda name: False)  # as if installed


PLUGINS = ["registry_lib", "plugin_a", "plugin_b", "plugin_pkg", "plugin_pkg.ext"]


@pytest.mark.parametrize(
    "cell",
    [
        "seen = list(registry_lib.REGISTERED)",  # it reads what a restored cell bound
        # it reads nothing restored: it imports the library itself
        "import registry_lib as reg\nseen = list(reg.REGISTERED)",
    ],
)
def test_an_import_registering_into_another_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cell: str
) -> None:
    _plugins(tmp_path, monkeypatch)
    notebook = [
        ("first", "import plugin_b\nimport plugin_pkg.ext"),
        ("second", "import plugin_a\nimport registry_lib"),
        ("data", "n = 1"),
    ]
    _forget(*PLUGINS)
    _notebook_run(tmp_path / "store", False, [*notebook, ("use", cell)])
    plain = ["plugin_b", "plugin_pkg.ext", "plugin_a"]
    assert plain == sys.modules["registry_lib"].REGISTERED
    _forget(*PLUGINS)
    shell, cells, _ = _notebook_run(tmp_path / "store", True, notebook)
    assert not any(name in sys.modules for name in PLUGINS)  # restored: nothing imported
    _run(cells, [("use", cell + "\nedited = True")])  # edited: it runs
    assert shell.user_ns["seen"] == plain
    assert shell.user_ns["plugin_pkg"] is sys.modules["plugin_pkg"]
    _forget(*PLUGINS)


@pytest.mark.parametrize("lazy", [False, True])
def test_a_restored_import_of_a_submodule_imports_the_submodule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lazy: bool
) -> None:
    """``import hvplot.pandas`` binds ``hvplot``: bringing that name back is not the import."""
    _plugins(tmp_path, monkeypatch)
    notebook = [("first", "import plugin_pkg.ext"), ("data", "n = 1")]
    _forget(*PLUGINS)
    _notebook_run(tmp_path / "store", False, notebook)
    _forget(*PLUGINS)
    _, cells, _ = _notebook_run(tmp_path / "store", lazy, notebook)
    _run(cells, [("use", "m = (n, plugin_pkg)")])  # it reaches the library
    assert sys.modules["registry_lib"].REGISTERED == ["plugin_pkg.ext"]
    _forget(*PLUGINS)


def test_a_notebook_function_reaching_names_through_eval_gets_every_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``eval`` in a helper reaches is not known: every value loads, and every import
    is made, a submodule that registers included (binding ``plugin_pkg`` back is not
    importing ``plugin_pkg.ext``)."""
    _plugins(tmp_path, monkeypatch)
    notebook = [
        ("first", "import plugin_pkg.ext"),
        ("data", "n = 1"),
        ("dynamic", "def dynamic():\n    return eval(''.join(['plugin', '_pkg'])).__name__"),
    ]
    _forget(*PLUGINS)
    _notebook_run(tmp_path / "store", False, notebook)
    _forget(*PLUGINS)
    _, cells, _ = _notebook_run(tmp_path / "store", True, notebook)
    _run(cells, [("use", "m = (n, dynamic())")])
    assert sys.modules["registry_lib"].REGISTERED == ["plugin_pkg.ext"]
    _forget(*PLUGINS)
