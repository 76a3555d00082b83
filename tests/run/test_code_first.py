"""A value that evaluates notebook code as it loads finds the functions its own cell
defined: a statsmodels model fitted from a formula that calls a notebook function
restores after a restart instead of running again. A failed load leaves the
namespace as it found it.

Each "restart" is a fresh InteractiveShell on the same store."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbcache.cache.default import set_default_cache
from nbcache.entry.codefirst import code_first
from nbcache.entry.pickling import dump_parts, load_parts, restoring_into
from nbcache.errors import ValueUnpicklingError
from tests.shells import close_shell, new_shell

DATA = (
    "import numpy as np, pandas as pd\n"
    "import statsmodels.formula.api as smf\n"
    "rng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'x': rng.random(40), 'y': rng.random(40)})\n"
)
# the function's name sorts after the model's: a load in name order meets the model first
MODEL = (
    "%%cache -n model\n"
    "with open('runs', 'a') as f:\n"
    "    f.write('x')\n"
    "def z_double(v):\n"
    "    return 2 * v\n"
    "a_fit = smf.ols('y ~ z_double(x)', data=df).fit()\n"
    "slope = float(a_fit.params.iloc[1])\n"
)


@pytest.fixture
def shells(tmp_path: Path) -> Iterator[list[InteractiveShell]]:
    opened: list[InteractiveShell] = []
    yield opened
    for shell in opened:
        close_shell(shell)


def session(root: Path, shells: list[InteractiveShell]) -> InteractiveShell:
    if shells:
        close_shell(shells.pop())
    set_default_cache(None)
    shell = new_shell(root)
    shells.append(shell)
    for cell in (DATA, MODEL):
        result = shell.run_cell(cell)
        assert result.success, result
    return shell


def test_a_formula_model_calling_its_cells_function_restores_after_a_restart(
    tmp_path: Path, shells: list[InteractiveShell], capsys: pytest.CaptureFixture[str]
) -> None:
    first = session(tmp_path, shells)
    slope = first.user_ns["slope"]
    predicted = list(first.user_ns["a_fit"].predict(pd.DataFrame({"x": [1.0, 2.0]})))

    capsys.readouterr()
    second = session(tmp_path, shells)
    err = capsys.readouterr().err
    assert (tmp_path / "runs").read_text() == "x", err  # restored, not run again
    assert "cannot load" not in err
    assert second.user_ns["slope"] == slope
    # the restored model evaluates its formula with the restored function
    assert list(second.user_ns["a_fit"].predict(pd.DataFrame({"x": [1.0, 2.0]}))) == predicted
    assert second.user_ns["z_double"](3) == 6


def test_a_failed_load_leaves_the_names_its_code_bound_as_they_were() -> None:
    namespace: dict[str, object] = {"__name__": "__main__", "helper": "before"}
    exec("def helper(v):\n    return v\n", namespace)
    made = namespace["helper"]
    pickled = dump_parts(code_first({"helper": made, "broken": Unloadable()}))
    namespace["helper"] = "before"
    with restoring_into(namespace), pytest.raises(Exception, match="cannot load"):
        load_parts(pickled.stream, pickled.buffers)
    assert namespace["helper"] == "before"

    del namespace["helper"]
    with restoring_into(namespace), pytest.raises(Exception, match="cannot load"):
        load_parts(pickled.stream, pickled.buffers)
    assert "helper" not in namespace


def test_code_is_bound_while_the_rest_loads_and_the_variables_keep_their_order() -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def zz(v):\n    return v + 1\n", namespace)
    variables = {"a": Looks("zz"), "m": 3, "zz": namespace.pop("zz")}
    pickled = dump_parts(code_first(variables))
    with restoring_into(namespace):
        loaded = load_parts(pickled.stream, pickled.buffers)
    assert list(loaded) == ["a", "m", "zz"]
    assert loaded["a"].found(2) == 3  # it found the cell's function while it loaded
    assert type(loaded) is dict
    assert "zz" not in namespace  # the load itself binds nothing for good


def test_a_load_on_another_thread_finds_the_code_and_leaves_the_namespace_alone() -> None:
    namespace: dict[str, object] = {"__name__": "__main__", "zz": "the user's"}
    exec("def zz(v):\n    return v + 1\n", namespace)
    pickled = dump_parts(code_first({"a": Looks("zz"), "zz": namespace["zz"]}))
    namespace["zz"] = "the user's"
    got: list[object] = []

    def load() -> None:
        with restoring_into(namespace):
            got.append(load_parts(pickled.stream, pickled.buffers))

    worker = threading.Thread(target=load)
    worker.start()
    worker.join()
    assert len(got) == 1 and got[0]["a"].found(2) == 3  # type: ignore[index]
    assert namespace["zz"] == "the user's"


def test_a_load_that_names_something_undefined_says_so_in_one_line() -> None:
    pickled = dump_parts({"a": Looks("defined_nowhere")})
    with pytest.raises(ValueUnpicklingError) as caught:
        load_parts(pickled.stream, pickled.buffers, name="the cell's variables")
    said = str(caught.value)
    assert "\n" not in said
    assert "naming `defined_nowhere` as it loads" in said
    assert "installed" not in said  # it is not a library's change


def test_variables_without_notebook_code_pickle_as_a_plain_dict() -> None:
    variables = {"a": 1, "b": [2]}
    assert code_first(variables) is variables
    assert b"codefirst" not in pickle.dumps(code_first(variables))


class Unloadable:
    def __reduce__(self) -> tuple[object, ...]:
        return (fail, ())


def fail() -> None:
    raise ValueError("this value does not load")


class Looks:
    """Looks a name up in the frames it loads from, as a formula model does."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        return (look_up, (self.name,))


def look_up(name: str) -> Found:
    import sys

    frame = sys._getframe(1)
    while frame is not None:
        if name in frame.f_globals:
            return Found(frame.f_globals[name])
        frame = frame.f_back  # type: ignore[assignment]
    try:
        eval(name, {})  # the NameError Python raises, as patsy meets it
    except NameError as exc:
        # patsy's own words span lines: the formula, then a caret under the factor
        raise RuntimeError(f"Error evaluating factor:\n    y ~ {name}(x)\n        ^^^") from exc
    raise AssertionError("unreachable")


class Found:
    def __init__(self, fn: object) -> None:
        self.fn = fn

    def found(self, v: int) -> int:
        return self.fn(v)  # type: ignore[operator, no-any-return]
