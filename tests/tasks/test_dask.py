"""Background cells and memoized calls on real dask clusters: a LocalCluster of two worker
processes, a scheduler and a worker started as separate commands, and the local cluster
nbcache starts itself."""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from distributed import Client, LocalCluster
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbcache import ExecutorError, configure, memoize
from nbcache.cache.core import Cache
from nbcache.entry.signing import Signer
from nbcache.store import LocalStore
from nbcache.tasks import dask as dx
from nbcache.tasks import daskpack, daskworker
from nbcache.tasks.executors import check_executor, get_executor
from nbcache.tasks.task import Task, TaskCancelled, progress
from nbcache.ui.widgets import WidgetCard
from tests.run.test_background import run
from tests.servers import stop_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes with one thread each, shared by the module's tests."""
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def on_dask(client: Client) -> Iterator[Client]:
    """``--executor dask`` runs on the module's cluster."""
    configure(dask=client)
    yield client
    configure()


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBCACHE_DASK", raising=False)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcache")
    yield shell
    shell.run_line_magic("unload_ext", "nbcache")
    shell.atexit_operations()
    atexit.unregister(shell.atexit_operations)
    InteractiveShell.clear_instance()


def task_of(shell: InteractiveShell, name: str) -> Task[Any]:
    return shell.magics_manager.registry["NbcacheMagics"].cells.tasks[name]  # type: ignore[no-any-return]


def reached(task: Task[Any], steps: int) -> threading.Event:
    """Set once ``task`` has reported at least ``steps`` progress steps."""
    event = threading.Event()

    def check(t: Task[Any]) -> None:
        if t.done_steps >= steps:
            event.set()

    task.on_change(check)
    check(task)
    return event


def worker_pids(client: Client) -> set[int]:
    return set(client.run(os.getpid).values())


def test_background_cell_runs_on_a_worker(ip: InteractiveShell, on_dask: Client) -> None:
    """The body runs in a worker process, its variables land here, the entry is stored,
    and a rerun restores it without dask."""
    run(ip, "import os\nbase = 40\ndef helper(x):\n    return x + 2\n")
    cell = (
        "%%cache -b --executor dask -n remote\nimport os\nworker_pid = os.getpid()\n"
        "answer = helper(base)\nprint('in the worker')\n"
    )
    run(ip, cell)
    ip.run_line_magic("nbcache", "wait remote")
    task = task_of(ip, "remote")
    assert task.state == "done", task.future.exception()
    assert ip.user_ns["answer"] == 42
    assert ip.user_ns["worker_pid"] != os.getpid()
    assert ip.user_ns["worker_pid"] in worker_pids(on_dask)
    assert ip.user_ns["os"] is os  # modules come back as imports, not copies
    for name in ("answer", "worker_pid"):
        ip.user_ns.pop(name)
    with capture_output() as again:
        run(ip, cell)
    assert ip.user_ns["answer"] == 42  # restored at once, from the store
    assert any(o.data.get("text/plain", "").startswith("nbcache: restored") for o in again.outputs)
    assert "in the worker" in again.stdout  # the worker's output was recorded and replays


def test_progress_comes_back_from_the_worker(ip: InteractiveShell, on_dask: Client) -> None:
    """nbcache.progress and tqdm steps on the worker reach the task (and so its card)."""
    run(ip, "import nbcache, time")
    cell = (
        "%%cache -b --executor dask -n steps\nfrom tqdm import tqdm\n"
        "for i in nbcache.progress(range(20)):\n    time.sleep(0.01)\n"
        "total = sum(1 for _ in tqdm(range(30), mininterval=0))\n"
    )
    run(ip, cell)
    task = task_of(ip, "steps")
    seen = reached(task, 30)
    ip.run_line_magic("nbcache", "wait steps")
    assert task.state == "done", task.future.exception()
    assert seen.wait(10)  # the last report may come just after the result
    assert (task.done_steps, task.total_steps) == (30, 30)
    assert ip.user_ns["total"] == 30


def test_impure_cells_all_run(ip: InteractiveShell, on_dask: Client, tmp_path: Path) -> None:
    """Two runs of the same body with the same inputs both run (dask does not merge them)."""
    run(ip, f"import os\nlog = {str(tmp_path / 'runs.log')!r}")
    body = "with open(log, 'a') as f:\n    f.write(f'{os.getpid()}\\n')\nstamp = 1\n"
    run(ip, "%%cache -b -f --executor dask -n first\n" + body)
    run(ip, "%%cache -b -f --executor dask -n second\n" + body)
    ip.run_line_magic("nbcache", "wait")
    assert task_of(ip, "first").state == task_of(ip, "second").state == "done"
    assert len((tmp_path / "runs.log").read_text().splitlines()) == 2


def test_cancel_reads_cancelling_until_the_worker_lets_go(
    ip: InteractiveShell, on_dask: Client
) -> None:
    """Cancel on a running task: cancelling until the body's next step, then cancelled;
    its variables are not merged and the worker is free again."""
    run(ip, "import nbcache, time")
    cell = (
        "%%cache -b --executor dask -n long\nfor i in nbcache.progress(range(200)):\n"
        "    time.sleep(0.05)\nfinished = True\n"
    )
    run(ip, cell)
    task = task_of(ip, "long")
    states: list[str] = []
    task.on_change(lambda t: states.append(t.state))
    shown: list[Any] = []
    card = WidgetCard(task, shown.append)
    task.on_change(card.update)
    assert reached(task, 1).wait(30)  # a worker runs it and reports
    started = time.monotonic()
    assert task.cancel()
    assert task.state == "cancelling"
    assert _shows(card, "cancelling") and card.cancel not in card.top.children
    ip.run_line_magic("nbcache", "wait long")
    assert task.state == "cancelled"
    assert time.monotonic() - started < 5  # it stopped at a step, not after 10 s
    assert states.index("cancelling") < states.index("cancelled")
    assert _shows(card, "cancelled")
    assert "finished" not in ip.user_ns and "i" not in ip.user_ns
    assert on_dask.run(lambda: len(daskworker._here)) == dict.fromkeys(on_dask.run(os.getpid), 0)
    card._stop.set()


def test_cancel_a_task_no_worker_started(ip: InteractiveShell, on_dask: Client) -> None:
    """With both worker threads busy, a queued task is cancelled at once and never runs."""
    run(ip, f"import nbcache, time\nmarker = {str(Path.cwd() / 'ran')!r}")
    # Two different bodies: two runs of one key would compute once, the second waiting.
    hold = "for i in nbcache.progress(range({})):\n    time.sleep(0.05)\n"
    run(ip, "%%cache -b --executor dask -n hold1\n" + hold.format(400))
    run(ip, "%%cache -b --executor dask -n hold2\n" + hold.format(401))
    holders = [task_of(ip, "hold1"), task_of(ip, "hold2")]
    assert all(reached(t, 1).wait(30) for t in holders)
    run(ip, "%%cache -b --executor dask -n queued\nopen(marker, 'w').close()\nlate = 1\n")
    queued = task_of(ip, "queued")
    assert queued.cancel()
    ip.run_line_magic("nbcache", "wait queued")
    assert queued.state == "cancelled"
    for holder in holders:
        holder.cancel()
    ip.run_line_magic("nbcache", "wait")
    assert [t.state for t in holders] == ["cancelled", "cancelled"]
    assert not (Path.cwd() / "ran").exists() and "late" not in ip.user_ns


def test_a_task_submitted_to_dask_is_stopped_by_cancel(on_dask: Client, tmp_path: Path) -> None:
    """Task.submit_to a DaskExecutor: its future runs once a worker starts it; after cancel
    it reads cancelling while the body holds the worker, then stops at its next step."""
    executor = get_executor("dask")
    release = tmp_path / "release"

    def body() -> str:
        for _ in progress(range(2)):
            while not release.exists():  # the worker holds here until the test lets go
                time.sleep(0.01)
        return "finished"

    task: Task[str] = Task("direct").submit_to(executor, body)
    remote = task._remote
    assert remote is not None
    deadline = time.monotonic() + 30
    while not remote.running():  # a worker reported that it started
        assert time.monotonic() < deadline and not remote.done()
        time.sleep(0.02)
    assert task.cancel()
    assert task.state == "cancelling"  # the worker has not reached a step yet
    release.touch()
    with pytest.raises(TaskCancelled):
        task.future.result(10)
    assert task.state == "cancelled"


def test_a_shut_down_executor_takes_no_more_work(on_dask: Client) -> None:
    """After shutdown a DaskExecutor refuses work with a message; asking again gives a new one."""
    first = get_executor("dask")
    first.shutdown()
    with pytest.raises(ExecutorError, match="shut down"):
        first.submit(os.getpid)
    second = get_executor("dask")
    assert second is not first and second.submit(os.getpid).result(30) in worker_pids(on_dask)


def test_failure_shows_the_cells_traceback(ip: InteractiveShell, on_dask: Client) -> None:
    """A body that raises on the worker fails the task; the card shows the cell's own line."""
    with capture_output() as shown:
        run(ip, "%%cache -b --executor dask -n broken\npartial = 1\nraise ValueError('late')\n")
        ip.run_line_magic("nbcache", "wait broken")
    assert task_of(ip, "broken").state == "failed"
    text = shown.stdout
    assert "broken failed" in text and "ValueError: late" in text
    assert "raise ValueError('late')" in text  # the line itself, not just its number
    assert "distributed" not in text.split("Traceback")[1]  # it starts at the cell
    assert "partial" not in ip.user_ns


def test_unpicklable_input_is_named(ip: InteractiveShell, on_dask: Client) -> None:
    """An input that cannot go to a worker (left out of the key, or the cell would run
    uncached here) fails the task with its name and type."""
    run(ip, "import threading\nguard = threading.Lock()")
    with capture_output() as shown:
        cell = "%%cache -b --executor dask -n locked --ignore guard\nwith guard:\n    inside = 1\n"
        run(ip, cell)
        ip.run_line_magic("nbcache", "wait locked")
    assert task_of(ip, "locked").state == "failed"
    assert "cannot send inputs['guard'] (_thread.lock) to the dask workers" in shown.stdout


def test_notebook_local_module_goes_by_value(
    ip: InteractiveShell, on_dask: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module beside the notebook, which the workers cannot import, is sent by value: as
    an input, in the objects made from it, and for the body's own import."""
    name = f"nbhelpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "class Box:\n    def __init__(self, value):\n        self.value = value\n\n"
        "def double(box):\n    return Box(box.value * 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert set(on_dask.run(importlib.util.find_spec, name).values()) == {None}
    run(ip, f"import {name} as helpers\nstart = helpers.Box(21)")
    cell = (
        f"%%cache -b --executor dask -n shipped\nimport {name}\n"
        f"result = {name}.double(start)\nvia_input = helpers.double(start).value\n"
    )
    run(ip, cell)
    ip.run_line_magic("nbcache", "wait shipped")
    task = task_of(ip, "shipped")
    assert task.state == "done", task.future.exception()
    result = ip.user_ns["result"]
    assert type(result) is ip.user_ns["helpers"].Box and result.value == 42
    assert ip.user_ns["via_input"] == 42
    assert ip.user_ns[name] is sys.modules[name]  # the body's import comes back as ours
    gone = on_dask.run(lambda: name in sys.modules)
    assert not any(gone.values())  # the worker's modules are as they were


def test_which_modules_are_notebook_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local: loaded from a file under the working directory, outside site-packages and the
    Python installation; a body's imports of such modules are found (and loaded)."""
    tag = uuid.uuid4().hex[:8]
    here, installed, elsewhere = (
        tmp_path / "notebooks",
        tmp_path / "notebooks" / "venv" / "lib" / "site-packages",
        tmp_path / "elsewhere",
    )
    for folder, name in ((here, "near"), (installed, "inst"), (elsewhere, "far")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}_{tag}.py").write_text("VALUE = 1\n")
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.chdir(here)
    names = [f"{name}_{tag}" for name in ("near", "inst", "far")]
    source = "".join(f"import {name}\n" for name in names) + "import json, _bisect, nbcache\n"
    assert [m.__name__ for m in daskpack.modules_imported_by(source)] == [names[0]]
    assert names[0] in sys.modules  # loaded here, so that its current version can be sent
    for name in names[1:]:
        __import__(name)
    local = {m.__name__ for m in daskpack.notebook_modules()}
    assert names[0] in local and not local & {*names[1:], "nbcache", "json"}
    for name in names:
        monkeypatch.delitem(sys.modules, name)


def test_memoize_submit_runs_on_dask(client: Client, tmp_path: Path) -> None:
    """configure(executor=client): submit runs the function on a worker, keeps its result
    here (memory and store), shares a call already on its way, and a hit is done at once."""
    configure(executor=client)
    try:
        store, signer = (
            LocalStore(tmp_path / "store"),
            Signer(b"nbcache-test-secret-of-32-bytes-0k"),
        )
        go = tmp_path / "go"

        @memoize(cache=Cache(store, signer=signer))
        def where(x: int) -> tuple[int, int]:
            while not go.exists():  # on the worker, until the test lets it finish
                time.sleep(0.01)
            return x * 2, os.getpid()

        first, same = where.submit(21), where.submit(21)
        assert first is same  # one computation for one call on its way
        go.touch()
        value, pid = first.result(60)
        assert value == 42 and pid != os.getpid() and pid in worker_pids(client)
        again = where.submit(21)
        assert again.done() and again.result() == (42, pid)
        assert where.cache_info()[:2] == (1, 1)
        fresh = memoize(cache=Cache(store, signer=signer))(where.__wrapped__)
        assert fresh(21) == (42, pid) and fresh.cache_info().store_hits == 1
        other = where.submit(5)
        other.cancel()  # queued or running: it stops, and nothing waits on it
        assert isinstance(get_executor(), dx.DaskExecutor)

        @memoize(cache=Cache(store, signer=signer))
        def fib(n: int) -> int:  # calls itself: the worker gets it memoized in memory
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        assert fib.submit(60).result(60) == 1548008755920
    finally:
        configure()


def test_without_a_cluster_the_message_says_what_to_do(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No client, no NBCACHE_DASK: one line, no traceback, nothing runs; the same without
    distributed, naming the extra to install."""
    configure()
    with capture_output() as shown:
        result = ip.run_cell("%%cache -b --executor dask\nx = 1\n")
    error = result.error_in_exec
    assert isinstance(error, UsageError)
    message = str(error)
    assert "\n" not in message and "NBCACHE_DASK=local" in message
    assert "nbcache.configure(executor=client)" in message
    assert "Traceback" not in shown.stdout + shown.stderr and "x" not in ip.user_ns
    with pytest.raises(ExecutorError, match="NBCACHE_DASK"):
        configure(executor="dask")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ExecutorError, match=r'pip install "nbcache\[dask\]"'):
        check_executor("dask")
    result = ip.run_cell("%%cache -b --executor dask\nx = 1\n")
    assert "nbcache[dask]" in str(result.error_in_exec)


def test_import_does_not_load_distributed() -> None:
    """import nbcache (and its dask module) loads neither distributed nor dask."""
    code = (
        "import sys, nbcache, nbcache.tasks.dask, nbcache.run.cell, nbcache.run.background; "
        "nbcache.configure('process'); "
        "print(sorted(m for m in ('distributed', 'dask') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


# -- a scheduler and a worker started as commands, reached through NBCACHE_DASK -----------


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and ``dask worker`` as commands; the scheduler's address."""
    folder = tmp_path_factory.mktemp("dask-commands")
    scheduler_file = str(folder / "scheduler.json")
    dask = str(Path(sys.executable).parent / "dask")
    local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    with open(folder / "dask.log", "wb") as log:

        def start(*args: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [dask, *args, *local, "--scheduler-file", scheduler_file],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        scheduler = start("scheduler", "--port", "0")
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(scheduler_file):  # written once the scheduler listens
                assert scheduler.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            with Client(scheduler_file=scheduler_file, set_as_default=False, timeout=30) as probe:
                address = probe.scheduler.address
                worker = start("worker", "--nworkers", "1")
                try:
                    probe.wait_for_workers(1, timeout=60)
                    yield address
                finally:
                    stop_process(worker, grace=15)
        finally:
            stop_process(scheduler, grace=15)


def test_scheduler_address_from_the_environment(
    ip: InteractiveShell, scheduler_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NBCACHE_DASK=tcp://...: a background cell and a submitted call run on that worker."""
    monkeypatch.setenv("NBCACHE_DASK", scheduler_address)
    try:
        run(ip, "import os\nseed = 7")
        run(ip, "%%cache -b --executor dask -n cli\nimport os\nthere = os.getpid()\ny = seed * 6")
        ip.run_line_magic("nbcache", "wait cli")
        assert task_of(ip, "cli").state == "done", task_of(ip, "cli").future.exception()
        executor = dx.executor()
        assert executor.client.scheduler.address == scheduler_address
        (worker_pid,) = worker_pids(executor.client)
        assert ip.user_ns["y"] == 42 and ip.user_ns["there"] == worker_pid != os.getpid()
        assert executor.submit(os.getpid).result(30) == worker_pid
    finally:
        dx.close()


def test_local_cluster_started_once_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """NBCACHE_DASK=local: nbcache starts one LocalCluster of two worker processes on first
    use, reuses it, and closes it (its processes end) when asked or at exit."""
    monkeypatch.setenv("NBCACHE_DASK", "local")
    try:
        first = get_executor("dask")
        assert get_executor("dask") is first
        pids = worker_pids(first.client)
        assert len(pids) == 2 and os.getpid() not in pids
        assert first.submit(os.getpid).result(30) in pids
    finally:
        dx.close()
    deadline = time.monotonic() + 20
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
        assert time.monotonic() < deadline, "the local cluster's workers outlived close()"
        time.sleep(0.1)


def _shows(card: WidgetCard, state: str) -> bool:
    """Whether the card's state chip reads ``state`` (it redraws a few times a second)."""
    deadline = time.monotonic() + 5
    while f'data-state="{state}"' not in card.head.value and time.monotonic() < deadline:
        time.sleep(0.02)
    return f'data-state="{state}"' in card.head.value
