"""``nbcache run`` on real notebooks in real kernels: a second run executes no cell body,
an edit executes exactly the edited cell and its dependents, outputs are those of
``jupyter execute``, the plan predicts the run, and parameters share upstream cells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

# Each cell appends its number to runs.log when its body executes (a write is no input),
# and takes a little time, as the cells worth caching do.
CELLS = [
    "import json\nimport numpy as np\nopen('runs.log', 'a').write('1\\n')",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('2\\n')\n"
    "raw = np.arange(200_000, dtype=float)",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('3\\n')\nsquares = raw ** 2",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('4\\n')\n"
    "print('mean square', squares.mean())",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('5\\n')\nhalf = raw / 2\nhalf[:3]",
    "def summary(values):\n    open('runs.log', 'a').write('6\\n')\n"
    "    return {'n': len(values), 'max': float(values.max())}",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('7\\n')\n"
    "stats = summary(squares)\nstats",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('8\\n')\n"
    "report = json.dumps(stats)\nprint(report)",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('9\\n')\n"
    "tail = half[-5:].tolist()\ntail",
    "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('10\\n')\n"
    "from IPython.display import Markdown\nMarkdown(f'**{len(tail)}** values, {report}')",
]


def write_notebook(path: Path, cells: list[str], parameters: str | None = None) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A notebook")]
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)


def nbcache_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbcache", "run", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def said(stderr: str) -> list[str]:
    """nbcache's lines on a run's stderr (a kernel's own lines, zmq's say, left out)."""
    return [line for line in stderr.splitlines() if line.startswith("nbcache")]


def executed(folder: Path) -> list[str]:
    """The cells whose bodies ran since the last call, in order."""
    log = folder / "runs.log"
    numbers = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return numbers


def outputs(path: Path) -> list[Any]:
    """What each code cell shows, as a reader sees it (no timings, no ids)."""
    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown = []
        for output in cell.outputs:
            output = dict(output)
            output.pop("execution_count", None)
            shown.append(json.dumps(output, sort_keys=True))
        out.append((cell.execution_count, shown))
    return out


def jupyter_execute(folder: Path, name: str, out: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "jupyter", "execute", name, f"--output={out}"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBCACHE_DIR", str(tmp_path / "store"))
    return tmp_path


def test_a_second_run_executes_no_cell_body_and_shows_what_jupyter_execute_shows(
    folder: Path,
) -> None:
    write_notebook(folder / "nb.ipynb", CELLS)
    jupyter_execute(folder, "nb.ipynb", "plain.ipynb")
    every = ["1", "2", "3", "4", "5", "7", "6", "8", "9", "10"]  # cell 7 calls summary()
    assert executed(folder) == every
    first = nbcache_run(folder, "nb.ipynb", "-o", "first.ipynb")
    assert first.returncode == 0, first.stderr
    assert executed(folder) == every
    second = nbcache_run(folder, "nb.ipynb", "-o", "second.ipynb")
    assert second.returncode == 0, second.stderr
    assert executed(folder) == []
    assert "10 code cells, 10 restored, 0 ran" in second.stdout
    plain = outputs(folder / "plain.ipynb")
    assert outputs(folder / "first.ipynb") == plain
    assert outputs(folder / "second.ipynb") == plain


def test_an_edited_cell_executes_with_exactly_its_dependents_and_the_plan_says_so(
    folder: Path,
) -> None:
    write_notebook(folder / "nb.ipynb", CELLS)
    assert nbcache_run(folder, "nb.ipynb", "-o", "first.ipynb").returncode == 0
    executed(folder)
    nb = nbformat.read(folder / "nb.ipynb", as_version=4)
    nb.cells[3].source = nb.cells[3].source.replace("raw ** 2", "raw ** 3")  # squares changes
    nbformat.write(nb, folder / "nb.ipynb")  # as an editor saves it: the cells keep their ids
    plan = nbcache_run(folder, "nb.ipynb", "--plan")
    assert plan.returncode == 0, plan.stderr
    actions = [
        "depends" if "`: run or restore" in line else line.split("`: ")[1].split(" ")[0].rstrip(":")
        for line in plan.stdout.splitlines()
        if line.startswith("cell ")
    ]
    # the cells reading what the edited cell makes run unless it comes out as before
    restore, run_, depends = "restore", "run", "depends"
    assert actions == [
        *(restore, restore, run_, depends, restore, restore, depends, depends, restore, depends)
    ]
    assert "the cell's code changed" in plan.stdout
    assert "it reads `squares`, which cell 4 runs again" in plan.stdout  # after the Markdown
    assert executed(folder) == []  # planning ran no body
    run = nbcache_run(folder, "nb.ipynb", "-o", "edited.ipynb")
    assert run.returncode == 0, run.stderr
    # the edited cell, the cells that read what it made, and summary() called again by 7
    assert executed(folder) == ["3", "4", "7", "6", "8", "10"]
    ran = [n for n, action in enumerate(actions, start=1) if action != "restore"]
    assert ran == [3, 4, 7, 8, 10]
    assert "10 code cells: 5 restore, 1 run, 4 run or restore;" in plan.stdout
    # the plan's cell N is the run's cell N (Markdown counted), and says what it did
    planned = {
        int(line.split()[1]): line.split("`: ")[1]
        for line in plan.stdout.splitlines()
        if line.startswith("cell ")
    }
    nb = nbformat.read(folder / "edited.ipynb", as_version=4)
    done = {
        n: cell.metadata["nbcache"]["outcome"]
        for n, cell in enumerate(nb.cells, start=1)
        if cell.cell_type == "code"
    }
    assert sorted(planned) == sorted(done)
    for n, outcome in done.items():
        if not planned[n].startswith("run or restore"):
            assert planned[n].startswith("restore") == (outcome == "restored"), (n, outcome)
    jupyter_execute(folder, "nb.ipynb", "plain.ipynb")
    assert outputs(folder / "edited.ipynb") == outputs(folder / "plain.ipynb")


def test_parameters_share_the_cells_upstream_of_their_first_use(folder: Path) -> None:
    cells = [
        "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('a\\n')\n"
        "base = list(range(1000))",
        "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('b\\n')\n"
        "scaled = [v * alpha for v in base]\nsum(scaled)",
    ]
    write_notebook(folder / "sweep.ipynb", cells, parameters="alpha = 1")
    for value, expected in (("2", ["a", "b"]), ("3", ["b"]), ("2", [])):
        run = nbcache_run(folder, "sweep.ipynb", "-p", "alpha", value, "-o", f"out{value}.ipynb")
        assert run.returncode == 0, run.stderr
        assert executed(folder) == expected
        nb = nbformat.read(folder / f"out{value}.ipynb", as_version=4)
        assert nb.cells[2].metadata["tags"] == ["injected-parameters"]
        assert nb.cells[-1].outputs[0]["data"]["text/plain"] == str(sum(range(1000)) * int(value))


def test_a_failing_cell_stops_the_run_with_exit_status_1_and_its_traceback_kept(
    folder: Path,
) -> None:
    write_notebook(folder / "bad.ipynb", ["x = 1", "1 / 0", "y = 2"])
    run = nbcache_run(folder, "bad.ipynb")
    assert run.returncode == 1
    assert "ZeroDivisionError" in run.stderr and "stopped" in run.stderr
    nb = nbformat.read(folder / "bad.ipynb", as_version=4)
    assert nb.cells[2].outputs[0]["ename"] == "ZeroDivisionError"  # written in place
    missing = nbcache_run(folder, "nothing.ipynb")
    assert missing.returncode == 2 and "no notebook at nothing.ipynb" in missing.stderr


def test_a_notebook_that_uses_nbcache_itself_runs_as_it_does_alone(folder: Path) -> None:
    cells = [
        "%load_ext nbcache",
        "%%cache -n setup\n__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('s\\n')\n"
        "base = 21",
        "__import__('time').sleep(0.02)\nopen('runs.log', 'a').write('d\\n')\ndoubled = base * 2",
    ]
    write_notebook(folder / "own.ipynb", cells)
    assert nbcache_run(folder, "own.ipynb", "-o", "first.ipynb").returncode == 0
    nb = nbformat.read(folder / "first.ipynb", as_version=4)
    assert nb.cells[1].outputs == []  # no "already loaded": a plain run shows nothing
    assert executed(folder) == ["s", "d"]
    plan = nbcache_run(folder, "own.ipynb", "--plan")
    assert "cell 3 `__import__('time').sleep(0.02)`: restore" in plan.stdout  # the %%cache cell
    assert "cell 2 `%load_ext nbcache`: run" in plan.stdout
    second = nbcache_run(folder, "own.ipynb")
    assert executed(folder) == []
    assert "3 code cells, 2 restored, 1 ran" in second.stdout


def test_what_is_no_notebook_gets_one_line_and_exit_status_2(folder: Path) -> None:
    (folder / "text.ipynb").write_text("not json")
    (folder / "empty.ipynb").write_text("")
    (folder / "folder.ipynb").mkdir()
    os.mkfifo(folder / "pipe.ipynb")  # would block a reader that opened it
    write_notebook(folder / "ok.ipynb", ["x = 1"])
    for name in ("text", "empty", "folder", "pipe"):
        run = nbcache_run(folder, f"{name}.ipynb")
        assert run.returncode == 2, (name, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("nbcache:")
    run = nbcache_run(folder, "ok.ipynb", "--kernel", "no-such-kernel")
    assert run.returncode == 2 and "no kernel named 'no-such-kernel'" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_notebook_without_code_runs_without_a_kernel(folder: Path) -> None:
    write_notebook(folder / "prose.ipynb", [])
    run = nbcache_run(folder, "prose.ipynb")
    assert run.returncode == 0 and run.stderr == ""
    assert "0 code cells" in run.stdout


def test_a_parameter_name_that_is_no_variable_runs_nothing(folder: Path) -> None:
    """`-p NAME VALUE` writes `NAME = VALUE` into a cell: a name that is code would run."""
    write_notebook(folder / "p.ipynb", ["x = 1"], parameters="alpha = 1")
    for name in ("x = 1; open('pwned', 'w') #", "1x", "class", ""):
        run = nbcache_run(folder, "p.ipynb", "-p", name, "1", "-o", "out.ipynb")
        assert run.returncode == 2, (name, run.stderr)
        assert "a parameter's name must be a Python variable name" in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    assert not (folder / "pwned").exists() and not (folder / "out.ipynb").exists()


def test_the_summary_names_the_failure_without_terminal_colours(folder: Path) -> None:
    write_notebook(folder / "bad.ipynb", ["1 / 0"])
    run = nbcache_run(folder, "bad.ipynb", "-o", "out.ipynb")
    assert run.returncode == 1
    assert "stopped: ZeroDivisionError: division by zero" in run.stderr
    assert "\x1b[" not in run.stderr


def test_parameters_that_are_not_finite_numbers_run_as_papermill_gives_them(
    folder: Path,
) -> None:
    cells = ["import math\nprint(repr(x), type(x).__name__)"]
    write_notebook(folder / "p.ipynb", cells, parameters="x = 0.0")
    expected = {"nan": "nan", "inf": "inf", "-inf": "-inf", "1e400": "inf"}
    for value, shown in expected.items():
        run = nbcache_run(folder, "p.ipynb", "-p", "x", value, "-o", "out.ipynb")
        assert run.returncode == 0, (value, run.stderr)
        nb = nbformat.read(folder / "out.ipynb", as_version=4)
        assert nb.cells[-1].outputs[0]["text"] == f"{shown} float\n"


def test_a_notebook_of_another_language_is_refused_in_one_line(folder: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    nb.metadata["language_info"] = {"name": "R"}
    nb.cells = [nbformat.v4.new_code_cell("x <- c(1, 2)\nprint(mean(x))")]
    nbformat.write(nb, folder / "r.ipynb")
    del nb.metadata["kernelspec"]  # only what the kernel said of itself when it last ran
    nbformat.write(nb, folder / "info.ipynb")
    before = (folder / "r.ipynb").read_bytes()
    for args in (["r.ipynb"], ["r.ipynb", "--plan"], ["info.ipynb", "-o", "out.ipynb"]):
        run = nbcache_run(folder, *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stderr.startswith("nbcache: ") and len(run.stderr.strip().splitlines()) == 1
        assert "is a notebook in R" in run.stderr and "Python" in run.stderr
    assert (folder / "r.ipynb").read_bytes() == before and not (folder / "out.ipynb").exists()


def test_a_restored_cell_interleaves_stdout_and_stderr_as_the_plain_run(folder: Path) -> None:
    cell = (
        "import sys, time\ntime.sleep(0.05)\nfor i in range(3):\n"
        "    print('out', i); sys.stdout.flush()\n"
        "    print('err', i, file=sys.stderr); sys.stderr.flush()\n"
    )
    write_notebook(folder / "nb.ipynb", [cell])
    jupyter_execute(folder, "nb.ipynb", "plain.ipynb")
    assert nbcache_run(folder, "nb.ipynb", "-o", "first.ipynb").returncode == 0
    second = nbcache_run(folder, "nb.ipynb", "-o", "second.ipynb")
    assert "1 restored" in second.stdout, second.stdout + second.stderr
    plain = outputs(folder / "plain.ipynb")
    assert len(plain[0][1]) == 6  # out, err, out, err, out, err
    assert outputs(folder / "second.ipynb") == plain


def test_parameters_never_change_the_source_notebook(folder: Path) -> None:
    write_notebook(folder / "p.ipynb", ["y = alpha * 2\ny"], parameters="alpha = 1")
    before = (folder / "p.ipynb").read_bytes()
    run = nbcache_run(folder, "p.ipynb", "-p", "alpha", "0.5")
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "-o" in run.stderr
    assert (folder / "p.ipynb").read_bytes() == before
    plan = nbcache_run(folder, "p.ipynb", "-p", "alpha", "0.5", "--plan")  # writes nothing
    assert plan.returncode == 0, plan.stderr
    assert (folder / "p.ipynb").read_bytes() == before


def test_parameters_for_a_notebook_without_a_parameters_cell_say_where_they_went(
    folder: Path,
) -> None:
    write_notebook(folder / "p.ipynb", ["alpha = 1", "y = alpha * 2\ny"])
    run = nbcache_run(folder, "p.ipynb", "-p", "alpha", "3", "-o", "out.ipynb")
    assert run.returncode == 0, run.stderr
    (line,) = said(run.stderr)
    assert "no cell tagged `parameters`" in line and line.startswith("nbcache: ")
    nb = nbformat.read(folder / "out.ipynb", as_version=4)
    assert nb.cells[0].metadata["tags"] == ["injected-parameters"]
    tagged = nbcache_run(folder, "p.ipynb", "-o", "again.ipynb")  # no -p: nothing to say
    assert tagged.returncode == 0 and said(tagged.stderr) == []


def test_the_plan_on_an_empty_store_has_nothing_to_estimate_from(folder: Path) -> None:
    write_notebook(folder / "nb.ipynb", CELLS[:3])
    plan = nbcache_run(folder, "nb.ipynb", "--plan")
    assert plan.returncode == 0, plan.stderr
    last = plan.stdout.strip().splitlines()[-1]
    assert "3 code cells: 0 restore, 3 run;" in last and "about 0 ms" not in last
    assert "no estimate" in last
    assert nbcache_run(folder, "nb.ipynb", "-o", "out.ipynb").returncode == 0
    again = nbcache_run(folder, "nb.ipynb", "--plan").stdout.strip().splitlines()
    assert "3 code cells: 3 restore, 0 run; nothing to run" in again[-2]
    assert again[-1].endswith(
        "unchanged: no kernel would start; every cell restores from the notebook's record"
    )


def test_nbcache_warnings_go_to_the_run_not_into_the_notebook(folder: Path) -> None:
    """The executed notebook shows what jupyter execute shows; each warning is one line of
    the run's stderr naming its cell, with advice an author can follow in a notebook."""
    cells = [
        "import threading, time\nlock = threading.Lock()\ntime.sleep(0.01)\nx = 1",
        "time.sleep(0.01)\ny = lock.locked()\nprint(y)",
    ]
    write_notebook(folder / "nb.ipynb", cells)
    jupyter_execute(folder, "nb.ipynb", "plain.ipynb")
    run = nbcache_run(folder, "nb.ipynb", "-o", "out.ipynb")
    assert run.returncode == 0, run.stderr
    assert outputs(folder / "out.ipynb") == outputs(folder / "plain.ipynb")
    pickled, hashed = said(run.stderr)
    assert pickled.startswith("nbcache run: cell 2 `import threading, time`: this cell's `lock`")
    assert "cannot be pickled" in pickled
    assert hashed.startswith("nbcache run: cell 3 `time.sleep(0.01)`: cannot hash `lock`")
    assert hashed.endswith("by beginning the cell with `%%cache --ignore lock`.")


def test_a_notebook_naming_only_a_kernel_of_another_language_is_refused(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = folder / "jupyter-data" / "kernels" / "ir"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps({"argv": ["false", "{connection_file}"], "display_name": "R", "language": "R"})
    )
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(folder / "jupyter-data"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R"}  # no language written
    nb.cells = [nbformat.v4.new_code_cell("x <- 1")]
    nbformat.write(nb, folder / "r.ipynb")
    run = nbcache_run(folder, "r.ipynb", "-o", "out.ipynb")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "runs R" in run.stderr and len(said(run.stderr)) == 1
    assert not (folder / "out.ipynb").exists()


# A kernel launcher that dies at its first start, as a kernel that lost the race for its
# ports does, and starts the real kernel after; each start is noted in starts.log.
FLAKY_LAUNCHER = """
import os, sys
with open(os.environ["STARTS_LOG"], "a") as log:
    log.write("start\\n")
if os.path.getsize(os.environ["STARTS_LOG"]) <= len("start\\n") or os.environ.get("DEAD"):
    sys.exit("zmq.error.ZMQError: Address already in use")
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""


def _flaky_kernels(folder: Path, monkeypatch: pytest.MonkeyPatch, *, dead: bool) -> Path:
    launcher = folder / "launcher"
    launcher.mkdir()
    (launcher / "ipykernel_launcher.py").write_text(FLAKY_LAUNCHER)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(launcher), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setenv("STARTS_LOG", str(folder / "starts.log"))
    if dead:
        monkeypatch.setenv("DEAD", "1")
    return folder / "starts.log"


def test_a_kernel_that_dies_at_its_start_is_started_once_more(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _flaky_kernels(folder, monkeypatch, dead=False)
    write_notebook(folder / "nb.ipynb", ["x = 6 * 7", "print(x)"])
    run = nbcache_run(folder, "nb.ipynb")
    assert run.returncode == 0, run.stderr
    assert starts.read_text().count("start") == 2
    assert "2 code cells" in run.stdout and "2 ran" in run.stdout, run.stdout
    assert nbformat.read(folder / "nb.ipynb", as_version=4).cells[2].outputs[0]["text"] == "42\n"


def test_a_kernel_that_never_starts_leaves_the_notebook_as_it_was_and_no_traceback(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(folder / "nb.ipynb", ["x = 6 * 7", "print(x)"])
    assert nbcache_run(folder, "nb.ipynb").returncode == 0  # outputs an earlier run left
    before = (folder / "nb.ipynb").read_bytes()
    starts = _flaky_kernels(folder, monkeypatch, dead=True)
    run = nbcache_run(folder, "nb.ipynb")
    assert run.returncode == 1
    assert starts.read_text().count("start") == 2  # once more, then it stops
    assert "0 ran, 2 not run" in run.stdout + run.stderr, run.stdout + run.stderr
    assert "the kernel did not start" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert (folder / "nb.ipynb").read_bytes() == before


def test_cells_an_earlier_run_left_outputs_in_are_not_run_after_a_failure(folder: Path) -> None:
    write_notebook(folder / "nb.ipynb", ["x = 1", "y = x + 1\ny"])
    assert nbcache_run(folder, "nb.ipynb").returncode == 0  # outputs an earlier run left
    write_notebook(folder / "broken.ipynb", ["1 / 0", "y = 2\ny"])
    old = nbformat.read(folder / "nb.ipynb", as_version=4)
    broken = nbformat.read(folder / "broken.ipynb", as_version=4)
    broken.cells[2].outputs = old.cells[2].outputs  # as if an earlier run had reached it
    broken.cells[2].execution_count = old.cells[2].execution_count
    nbformat.write(broken, folder / "broken.ipynb")
    run = nbcache_run(folder, "broken.ipynb", "-o", "out.ipynb")
    assert run.returncode == 1
    assert "1 not run" in run.stdout + run.stderr, run.stdout + run.stderr
    out = nbformat.read(folder / "out.ipynb", as_version=4)
    assert out.cells[2].outputs == [] and out.cells[2].execution_count is None
