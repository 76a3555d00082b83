"""Code fingerprints: what a function depends on beyond its arguments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbcache.keys.code import fingerprint, fingerprint_of, identity, is_local_module

from ..notebook_sim import outputs_under_hash_seeds, run_cell

BASE = """
SCALE = 2

def inner(x):
    return x * SCALE

def middle(x):
    return inner(x) + 1

def outer(x):
    return middle(x) - 1
"""


def _notebook(source: str = BASE) -> dict[str, Any]:
    return run_cell(source, {})


def test_identity_is_module_and_qualname() -> None:
    """A notebook function is named __main__:name, which a restart does not change."""
    ns = _notebook()
    assert identity(ns["outer"]) == "__main__:outer"
    assert is_local_module("__main__")
    assert not is_local_module("numpy")


def test_helper_two_levels_down() -> None:
    """Editing a helper two calls deep changes the caller's fingerprint."""
    ns = _notebook()
    before = fingerprint(ns["outer"])
    run_cell("def inner(x):\n    return x * SCALE + 0\n", ns)
    assert fingerprint(ns["outer"]) != before


def test_global_read_two_levels_down() -> None:
    """Changing a global a helper reads changes the caller's fingerprint."""
    ns = _notebook()
    before = fingerprint(ns["outer"])
    ns["SCALE"] = 3
    assert fingerprint(ns["outer"]) != before
    ns["SCALE"] = 2
    assert fingerprint(ns["outer"]) == before


def test_comments_and_blank_lines_do_not_count() -> None:
    """Comments, blank lines and layout leave the fingerprint alone."""
    ns = _notebook()
    before = fingerprint(ns["outer"])
    run_cell(
        """
        def inner(x):   # scale it

            return (x *
                    SCALE)  # same code
        """,
        ns,
    )
    assert fingerprint(ns["outer"]) == before


def test_mutated_data_global_is_noticed() -> None:
    """A global list or array mutated in place changes the fingerprint on the next look."""
    ns = _notebook(
        "import numpy as np\nWEIGHTS = np.ones(3)\ndef score(x):\n    return (WEIGHTS * x).sum()\n"
    )
    fp = fingerprint_of(ns["score"])
    assert fp.reads_data
    ns["WEIGHTS"][1] = 5.0
    assert fingerprint(ns["score"]) != fp.digest


def test_defaults_and_closures() -> None:
    """Default values and closure variables are part of the fingerprint."""
    ns = _notebook(
        """
        def make(k):
            def f(x, scale=2):
                return x * scale + k
            return f
        f1, f2 = make(1), make(2)
        """
    )
    assert fingerprint(ns["f1"]) != fingerprint(ns["f2"])
    before = fingerprint(ns["f1"])
    ns["f1"].__defaults__ = (3,)
    assert fingerprint(ns["f1"]) != before


def test_modules_by_version_local_modules_by_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed modules count by version; a local module by the hash of its source."""
    (tmp_path / "mylocal.py").write_text("def helper(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ns = _notebook(
        "import numpy as np\nimport mylocal\ndef f(x):\n    return np.sum(mylocal.helper(x))\n"
    )
    deps = {d.name: d for d in fingerprint_of(ns["f"]).dependencies}
    assert deps["np"].kind == "module" and deps["np"].digest == f"numpy@{np.__version__}"
    assert deps["mylocal"].digest.startswith("mylocal#")
    before = fingerprint(ns["f"])
    (tmp_path / "mylocal.py").write_text("def helper(x):\n    return x + 2\n")
    assert fingerprint(ns["f"]) != before
    monkeypatch.delitem(sys.modules, "mylocal")


def test_notebook_classes_by_their_methods() -> None:
    """A class defined in the notebook counts by its methods' code."""
    ns = _notebook(
        """
        class Model:
            def predict(self, x):
                return x * 2
        def run(x):
            return Model().predict(x)
        """
    )
    before = fingerprint(ns["run"])
    run_cell("class Model:\n    def predict(self, x):\n        return x * 3\n", ns)
    assert fingerprint(ns["run"]) != before


def test_recursion_is_cycle_safe() -> None:
    """Mutually recursive functions get a fingerprint; editing either changes both."""
    ns = _notebook(
        """
        def even(n):
            return True if n == 0 else odd(n - 1)
        def odd(n):
            return False if n == 0 else even(n - 1)
        """
    )
    before = fingerprint(ns["even"])
    run_cell("def odd(n):\n    return n % 2 == 1\n", ns)
    assert fingerprint(ns["even"]) != before


def test_redefinition_noticed_on_next_call_without_rebuild() -> None:
    """The cached fingerprint is reused while nothing changed, and rebuilt when it did."""
    ns = _notebook()
    first = fingerprint_of(ns["outer"])
    assert fingerprint_of(ns["outer"]) is first
    run_cell("def middle(x):\n    return inner(x) + 2\n", ns)
    assert fingerprint_of(ns["outer"]) is not first


NEW_PROCESS = """
import sys
sys.path.insert(0, {tests!r})
from notebook_sim import run_cell
from nbcache.keys.code import fingerprint
ns = run_cell({source!r}, {{}})
print(fingerprint(ns["outer"]))
"""


def test_fingerprint_is_stable_across_processes() -> None:
    """The same notebook code gets the same fingerprint in a new kernel."""
    code = NEW_PROCESS.format(tests=str(Path(__file__).parent.parent), source=BASE)
    seen = outputs_under_hash_seeds(code)
    assert len(seen) == 1
    assert seen == {fingerprint(_notebook()["outer"])}
