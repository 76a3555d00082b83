"""The body runner: statements run, the last expression's value returned, the user's
exceptions raised unchanged with tracebacks that start at the user's line."""

from __future__ import annotations

import ast
import linecache
import traceback
import types
from collections.abc import Iterator
from typing import Any

import pytest

from nbcache.run import body, routing
from nbcache.run.background import run_in_worker
from nbcache.run.body import remember, run_source, run_tree, split_last
from nbcache.run.output import NO_RESULT


@pytest.fixture(autouse=True)
def _streams_put_back() -> Iterator[None]:
    yield
    # run_in_worker routes the process's streams, as a worker process's are for good: in
    # this process, put them back (a later test's background cell would lose its output).
    routing.uninstall()


def test_statements_bind_in_the_namespace_and_the_last_expression_is_returned() -> None:
    namespace: dict[str, Any] = {}
    assert run_source("x = 2\ny = x * 3\ny + 1", namespace) == 7
    assert namespace["x"] == 2
    assert namespace["y"] == 6


@pytest.mark.parametrize(
    "source",
    [
        "x = 1",  # an assignment is no expression
        "",  # nothing at all
        "# only a comment\n",
        "if True:\n    5",  # only a top-level last expression is the value, as in IPython
        "def f():\n    return 3",
        "x = 1\nx += 1",
    ],
)
def test_a_body_without_a_last_expression_has_no_result(source: str) -> None:
    assert run_source(source, {}) is NO_RESULT


def test_a_last_expression_that_is_none_is_a_result() -> None:
    """``None`` is a value the body computed; NO_RESULT is the absence of one."""
    assert run_source("None", {}) is None


def test_a_trailing_semicolon_is_the_callers_to_honour() -> None:
    """IPython computes the value of ``x;`` too and only does not show it."""
    namespace: dict[str, Any] = {}
    assert run_source("x = 4\nx * 2;", namespace) == 8


def test_the_last_expression_runs_after_the_statements_once() -> None:
    namespace: dict[str, Any] = {"calls": []}
    source = "calls.append('statement')\ncalls.append('last') or len(calls)"
    assert run_source(source, namespace) == 2
    assert namespace["calls"] == ["statement", "last"]


def test_split_last_leaves_the_parsed_tree_as_it_was() -> None:
    tree = ast.parse("a = 1\na")
    statements, last = split_last(tree)
    assert len(tree.body) == 2  # the caller's tree is not changed
    assert len(statements.body) == 1
    assert isinstance(last, ast.Expression)
    assert split_last(ast.parse("a = 1"))[1] is None


def _callers(exc: BaseException) -> list[types.FrameType]:
    """The frames an exception passed through on its way out, before the body's first."""
    tb, frames = exc.__traceback__, []
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<"):
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _frames(exc: BaseException) -> list[tuple[str, int, str]]:
    """The traceback's frames from the body's first on."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<"):
        tb = tb.tb_next
    return [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(tb)]


def test_an_exception_is_raised_unchanged_from_the_users_line() -> None:
    filename = remember("x = 1\ny = 0\nx / y\n", "cell")
    with pytest.raises(ZeroDivisionError) as raised:
        run_source("x = 1\ny = 0\nx / y\n", {}, filename)
    assert _frames(raised.value) == [(filename, 3, "<module>")]  # nbcache's frames dropped
    formatted = "".join(traceback.format_exception(raised.value))
    assert "    x / y\n" in formatted  # the line itself, from linecache


def test_a_traceback_through_the_users_functions_keeps_every_frame_and_line() -> None:
    source = "def inner():\n    raise KeyError('k')\n\ndef outer():\n    inner()\n\nouter()\n"
    with pytest.raises(KeyError) as raised:
        run_source(source, {}, "<cell 7>")
    assert _frames(raised.value) == [
        ("<cell 7>", 7, "<module>"),
        ("<cell 7>", 5, "outer"),
        ("<cell 7>", 2, "inner"),
    ]


def test_nbcaches_own_frames_are_hidden_from_the_user() -> None:
    """Only the frames of the body's callers precede it, nbcache's marked hidden
    (``__tracebackhide__``, which IPython and pytest honour)."""
    with pytest.raises(ZeroDivisionError) as raised:
        run_source("1 / 0", {}, "<cell 4>")
    ours = [f.f_code.co_name for f in _callers(raised.value) if f.f_globals is vars(body)]
    assert ours == ["run_source", "run_tree"]
    assert all(f.f_locals.get("__tracebackhide__") for f in _callers(raised.value)[-2:])


def test_an_exception_in_the_last_expression_points_at_it() -> None:
    with pytest.raises(NameError) as raised:
        run_source("a = 1\n\nmissing + a", {}, "<cell 3>")
    assert _frames(raised.value) == [("<cell 3>", 3, "<module>")]


def test_the_exception_keeps_its_cause_and_context() -> None:
    source = "try:\n    {}['k']\nexcept KeyError as e:\n    raise ValueError('v') from e\n"
    with pytest.raises(ValueError) as raised:
        run_source(source, {})
    assert isinstance(raised.value.__cause__, KeyError)
    assert isinstance(raised.value.__context__, KeyError)


def test_keyboard_interrupt_and_system_exit_pass_through() -> None:
    with pytest.raises(KeyboardInterrupt):
        run_source("raise KeyboardInterrupt", {})
    with pytest.raises(SystemExit):
        run_source("raise SystemExit(3)", {})


def test_a_syntax_error_names_the_file_and_line() -> None:
    with pytest.raises(SyntaxError) as raised:
        run_source("x = 1\ny = (\n", {}, "<cell 9>")
    assert raised.value.filename == "<cell 9>"
    assert raised.value.lineno == 2


def test_remember_gives_each_body_its_own_lines() -> None:
    first = remember("a = 1\n", "background cell")
    second = remember("b = 2\n", "background cell")
    assert first != second
    assert first.startswith("<background cell ")
    assert linecache.getline(first, 1) == "a = 1\n"
    assert linecache.getline(second, 1) == "b = 2\n"


def test_a_shells_own_compiler_compiles_both_parts() -> None:
    """IPython's compiler (with the ``from __future__`` flags earlier cells set) compiles
    what runs; the runner only splits the body and runs it."""
    modes: list[str] = []

    def compiler(tree: Any, filename: str, mode: str) -> types.CodeType:
        modes.append(mode)
        return compile(tree, filename, mode)

    assert run_tree(ast.parse("n = 5\nn + 1"), "<cell>", {}, compiler) == 6
    assert modes == ["exec", "eval"]
    modes.clear()
    assert run_tree(ast.parse("n = 5"), "<cell>", {}, compiler) is NO_RESULT
    assert modes == ["exec"]


def test_a_worker_runs_the_body_with_the_same_runner() -> None:
    """What a process pool or dask worker runs: statements, the last expression's value,
    and the variables the body bound."""
    made = run_in_worker("total = base + 1\ntotal * 10", {"base": 4}, ["total"], "<bg>")
    assert made.result == 50
    assert made.vars == {"total": 5}
    assert run_in_worker("x = 1", {}, ["x"], "<bg>").result is None


def test_a_workers_exception_starts_at_the_body() -> None:
    with pytest.raises(ZeroDivisionError) as raised:
        run_in_worker("a = 1\n1 / 0", {}, ["a"], "<bg 2>")
    assert _frames(raised.value) == [("<bg 2>", 2, "<module>")]
