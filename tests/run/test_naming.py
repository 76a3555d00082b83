"""``run/naming.py``: the order a cell's names are shown in, what the user computed
first; and that order in the reports cells run through the fake shell hand over."""

from __future__ import annotations

import json
import types
from pathlib import Path

from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.naming import by_interest
from nbcache.store import LocalStore
from tests.run.fake_shell import FakeShell


def _order(source: str) -> list[str]:
    """The names ``source`` binds, run in a namespace of its own, in the order shown."""
    namespace: dict[str, object] = {}
    exec(compile(source, "<cell>", "exec"), namespace)
    del namespace["__builtins__"]
    return by_interest(source, sorted(namespace), namespace)


def test_results_before_imports_and_loop_variables() -> None:
    source = "import json\nfrom math import pi\nfor day in range(3):\n    pass\nsearch = pi * day\n"
    assert _order(source) == ["search", "json", "pi", "day"]


def test_the_name_assigned_last_leads() -> None:
    source = "rng = 1\nsamples = [rng] * 3\nrisk = sum(samples)\n"
    assert _order(source) == ["risk", "samples", "rng"]


def test_unpacked_names_keep_their_written_order_after_names_alone() -> None:
    source = "X_train, X_test, y_train, y_test = 1, 2, 3, 4\nscore = 0.9\n"
    assert _order(source) == ["score", "X_train", "X_test", "y_train", "y_test"]


def test_code_ranks_after_results_even_when_assigned_alone() -> None:
    source = "def fit(x):\n    return x\nfitted = fit(3)\nModel = dict\n"
    assert _order(source) == ["fitted", "fit", "Model"]  # code in the order it is bound


def test_a_module_bound_by_assignment_counts_as_imported() -> None:
    namespace: dict[str, object] = {"j": json, "n": 3}
    assert by_interest("n = 3\nj = __import__('json')", ["j", "n"], namespace) == ["n", "j"]


def test_an_input_changed_in_place_ranks_with_unpacked_names() -> None:
    source = "frame['c'] = 1\ntotal = 2\n"
    assert by_interest(source, ["frame", "total"], {"frame": {}, "total": 2}) == ["total", "frame"]


def test_with_and_except_targets_rank_last() -> None:
    source = (
        "try:\n    x = 1\nexcept ValueError as err:\n    pass\nwith open('f') as f:\n    y = 2\n"
    )
    ns = {"x": 1, "err": None, "f": None, "y": 2}
    assert by_interest(source, ["err", "f", "x", "y"], ns) == ["y", "x", "err", "f"]


def test_names_the_code_does_not_bind_and_code_that_does_not_parse() -> None:
    assert by_interest("a = 1", ["b", "a"], {"a": 1, "b": 2}) == ["a", "b"]
    module = types.ModuleType("m")
    assert by_interest("a = (", ["m", "a", "a"], {"m": module, "a": 1}) == ["a", "m"]


def test_a_report_names_what_the_cell_computed_first(tmp_path: Path) -> None:
    shell = FakeShell()
    cache = Cache(LocalStore(tmp_path), signer=Signer(b"secret"))
    source = "import math\nfor i in range(3):\n    pass\ntotal = math.fsum([1.0] * i)\n"
    CellRunner(shell, lambda: cache).run(source, CellOptions())
    (report,) = shell.reports
    assert report.names == ("total", "math", "i")
