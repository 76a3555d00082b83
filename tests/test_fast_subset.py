"""``pytest -m fast`` is the quick loop: it holds no test that needs Chromium, a server,
a kernel, dask or many processes, and a fast test that starts one of them fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_FIXTURES, TESTS, forbidden_command

SLOW_FOLDERS = ("browser", "notebooks")  # Chromium; real kernels
FAST_SAME = "fast and not slow"  # -m fast's selection, with the slow folders collected


def test_this_test_is_fast(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("fast") is not None
    assert request.node.get_closest_marker("slow") is None


@pytest.mark.parametrize(
    "command",
    [  # none of them exists, so a guard that let one through fails with FileNotFoundError
        ["/nonexistent/chromium", "--headless"],
        ["/nonexistent/redis-server", "--port", "0"],
        ["/nonexistent/moto_server", "-p", "0"],
        ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "k.json"],
        ["/nonexistent/python", "-m", "pip", "download", "seaborn"],
        ["/nonexistent/dask", "scheduler"],
        "/nonexistent/jupyter execute nb.ipynb",
    ],
)
def test_a_fast_test_cannot_start_what_the_fast_subset_does_without(
    command: list[str] | str,
) -> None:
    assert forbidden_command(command) is not None
    with pytest.raises(AssertionError, match="is in the fast subset but starts"):
        subprocess.Popen(command)


def test_plain_python_processes_are_allowed() -> None:
    assert forbidden_command([sys.executable, "-c", "pass"]) is None
    done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True)
    assert done.stdout == "42\n"


def test_the_fast_selection_holds_no_browser_kernel_server_or_dask_test(
    request: pytest.FixtureRequest,
) -> None:
    """Every collected test marked fast lies outside the slow folders and uses no server
    fixture, whichever selection this run made (with ``-m fast``, all of them)."""
    fast = [i for i in request.session.items if i.get_closest_marker("fast")]
    assert request.node in fast
    for item in fast:
        where = Path(item.path).relative_to(TESTS).parts
        assert where[0] not in SLOW_FOLDERS, item.nodeid
        assert where[-1] != "test_dask.py", item.nodeid
        assert not SERVER_FIXTURES & set(getattr(item, "fixturenames", ())), item.nodeid
        assert "[s3]" not in item.nodeid and "[redis]" not in item.nodeid, item.nodeid


def test_the_slow_folders_contribute_nothing_to_the_fast_selection() -> None:
    """Collected on their own (one pytest process, nothing run), the folders and modules
    that need Chromium, kernels or dask select no fast test, and the store contract
    only its backends that need no server."""
    slow_places = [
        "tests/browser",
        "tests/notebooks",
        "tests/tasks/test_dask.py",
        "tests/store/test_contract.py",
    ]
    done = subprocess.run(
        # the same selection as -m fast, which would not even collect the slow folders
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", FAST_SAME, *slow_places],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
    )
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    assert selected, done.stdout + done.stderr
    assert all(s.startswith("tests/store/test_contract.py::") for s in selected), selected
    backends = {s.rpartition("[")[2].rstrip("]") for s in selected}
    assert backends == {"local", "memory", "tiered"}
