"""Resumable cells in real kernels: a loop killed (SIGKILL), interrupted or failing half-way
resumes at its last checkpoint in the next run and ends with the values an uninterrupted
run gives; a changed cell does not resume. So do background cells whose worker (a dask
worker, a process of the pool) is killed mid-loop, and one cancelled from its card.

Kernels are driven with jupyter_client (not nbclient, which runs to the end), so a test
can kill or interrupt one in the middle of a cell; the cancel runs through nbclient.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.notebooks import nbrun
from tests.notebooks.nbrun import kernel_env
from tests.notebooks.test_background_kernel import _card_of, _html

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

STEPS = 60
LOOP = f"""\
%%cache -n resumable --checkpoint 0s
import os, random, time
import numpy as np
from nbcache import progress
random.seed(1)
np.random.seed(2)
rng = np.random.default_rng(3)
total = 0
draws = []
for i in progress(range({STEPS})):
    total += i
    draws.append((random.random(), float(np.random.rand()), float(rng.random())))
    print(f"step {{i}}", flush=True)
    time.sleep(0.04)
    if i == int(os.environ.get("FAIL_AT", "-1")):
        raise ValueError(f"failed at {{i}}")
"""
DIGEST = (
    "import hashlib\nprint('digest', hashlib.sha256(repr((total, draws, i)).encode()).hexdigest())"
)
RESUMED = re.compile(r"resumed at step (\d+) of (\d+), saved")


class Kernel:
    """One ipykernel of this interpreter, on the test's store, driven message by message."""

    def __init__(self, root: Path, store: Path, **env: str) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        root.mkdir(parents=True, exist_ok=True)
        self.km = KernelManager(
            kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
        )
        self.km.start_kernel(env={**kernel_env(root, store), **env}, cwd=str(root))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.run("%load_ext nbcache")

    def send(self, code: str) -> str:
        return str(self.kc.execute(code))

    def read(self, msg_id: str, until: str | None = None, timeout: float = 60) -> tuple[str, bool]:
        """Text the cell showed (streams, errors) until it is idle, or until ``until``
        appears in it; whether it ended with an error."""
        text, failed = "", False
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                msg: dict[str, Any] = self.kc.get_iopub_msg(timeout=1)
            except Exception:  # noqa: BLE001 - queue.Empty: keep waiting
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                text += content["text"]
            elif kind == "error":
                failed = True
                text += "\n".join(content["traceback"])
            elif kind in ("execute_result", "display_data"):  # an output of its own: a line
                text += str(content["data"].get("text/plain", "")) + "\n"
            elif kind == "status" and content["execution_state"] == "idle":
                return text, failed
            if until is not None and until in text:
                return text, failed
        raise TimeoutError(f"the kernel did not finish: {text[-500:]}")

    def run(self, code: str) -> str:
        text, failed = self.read(self.send(code))
        assert not failed, text
        return text

    def kill(self) -> None:
        """SIGKILL, as the out-of-memory killer or a crash ends a kernel."""
        process = self.km.provisioner.process  # type: ignore[union-attr]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernels(tmp_path: Path) -> Iterator[Any]:
    started: list[Kernel] = []

    def start(store: str = "store", **env: str) -> Kernel:
        kernel = Kernel(tmp_path / f"k{len(started)}", tmp_path / store, **env)
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        kernel.close()


def _digest(text: str) -> str:
    (found,) = re.findall(r"digest ([0-9a-f]{64})", text)
    return str(found)


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The values of an uninterrupted run of the loop, in a kernel of its own."""
    root = tmp_path_factory.mktemp("plain")
    kernel = Kernel(root / "k", root / "store")
    try:
        out = kernel.run(LOOP.replace("--checkpoint 0s", "--checkpoint off"))
        assert "resumed" not in out
        return _digest(kernel.run(DIGEST))
    finally:
        kernel.close()


def _resumed_step(text: str) -> int:
    found = RESUMED.search(text)
    assert found is not None, text[-1000:]
    assert int(found.group(2)) == STEPS
    return int(found.group(1))


def _steps_shown(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^step (\d+)$", text, re.MULTILINE)]


def test_a_kernel_killed_half_way_resumes_in_a_fresh_kernel(kernels: Any, expected: str) -> None:
    first = kernels()
    msg = first.send(LOOP)
    first.read(msg, until="step 30\n")
    first.kill()  # SIGKILL, in the middle of step 31
    second = kernels()
    out = second.run(LOOP)
    step = _resumed_step(out)
    assert 20 <= step <= 31
    # the steps done are shown again (replayed), then the rest run: each once, in order
    assert _steps_shown(out) == list(range(STEPS))
    assert _digest(second.run(DIGEST)) == expected
    # finished: a third kernel restores the entry, no resume
    third = kernels()
    again = third.run(LOOP)
    assert "restored" in again and not RESUMED.search(again)
    assert _digest(third.run(DIGEST)) == expected


def test_a_keyboard_interrupt_resumes_in_the_same_kernel(kernels: Any, expected: str) -> None:
    kernel = kernels()
    msg = kernel.send(LOOP)
    kernel.read(msg, until="step 25\n")
    kernel.km.interrupt_kernel()
    text, failed = kernel.read(msg)
    assert failed and "KeyboardInterrupt" in text
    out = kernel.run(LOOP)
    assert 15 <= _resumed_step(out) <= 30
    assert _digest(kernel.run(DIGEST)) == expected


def test_an_exception_in_step_k_resumes(kernels: Any, expected: str) -> None:
    kernel = kernels()
    kernel.run("import os; os.environ['FAIL_AT'] = '33'")
    text, failed = kernel.read(kernel.send(LOOP))
    assert failed and "failed at 33" in text
    kernel.run("del os.environ['FAIL_AT']")
    out = kernel.run(LOOP)
    assert 25 <= _resumed_step(out) <= 33
    assert _digest(kernel.run(DIGEST)) == expected


def test_a_changed_cell_does_not_resume(kernels: Any, expected: str) -> None:
    first = kernels()
    first.read(first.send(LOOP), until="step 30\n")
    first.kill()
    second = kernels()
    out = second.run(LOOP.replace("total = 0", "total = 0 * 1"))
    assert not RESUMED.search(out)
    assert _steps_shown(out) == list(range(STEPS))
    assert _digest(second.run(DIGEST)) == expected
    # the original cell still finds its own checkpoint
    assert RESUMED.search(second.run(LOOP))


TASK = "get_ipython().magics_manager.registry['NbcacheMagics'].cells.tasks['resumable']"


def test_a_background_cell_killed_half_way_resumes(kernels: Any, expected: str) -> None:
    """On a thread: killed half-way, a fresh kernel's run starts at the checkpoint (the
    steps it ran are counted outside the namespace, in builtins) and ends with the same
    values."""
    background = LOOP.replace("%%cache -n resumable", "%%cache -b -n resumable").replace(
        'print(f"step {i}", flush=True)',
        "import builtins; builtins.__dict__.setdefault('ran', []).append(i)",
    )
    first = kernels()
    first.run(background)
    deadline = time.time() + 30
    while time.time() < deadline:
        if int(first.run(f"print({TASK}.done_steps)").split()[-1]) >= 30:
            break
        time.sleep(0.1)
    first.kill()
    second = kernels()
    second.run(background)
    second.run("%nbcache wait resumable")
    assert second.run(f"print({TASK}.state)").strip() == "done"
    assert _digest(second.run(DIGEST)) == expected
    ran = second.run("import builtins; print(builtins.ran[0], builtins.ran[-1], len(builtins.ran))")
    start, end, count = map(int, ran.split())
    assert start >= 20 and end == STEPS - 1 and count == STEPS - start


WRITES = """\
%%cache -n writes --checkpoint 0s
import time
import numpy as np
from nbcache import progress
state = np.ones(50_000_000 // 8)
for i in progress(range(80)):
    state[i::97] += 1.0
    time.sleep(0.02)
"""
WRITES_SEEN = """\
from nbcache.run import checkpoint
(writer,) = [w for w in checkpoint._writers.values() if w.written]
writer.wait(30)
print("written", writer.written)
"""


def test_the_checkpoint_write_runs_while_the_loop_goes_on(kernels: Any) -> None:
    """With a 50 MB state and a checkpoint due at every step, the loop goes on while each
    write runs: a loop that waited for the disk would have every step written, so steps
    written far apart show it did not (counted, not timed: a loaded machine slows both)."""
    kernel = kernels()
    kernel.run(WRITES)
    out = kernel.run(WRITES_SEEN)
    written = [int(n) for n in re.findall(r"\d+", out.split("written")[1].split("\n")[0])]
    assert len(written) >= 2 and max(b - a for a, b in itertools.pairwise(written)) > 1, out
    assert len(written) < 80, out  # steps went on while their snapshots were being written


def _elsewhere(executor: str, where: Path, loop: str = LOOP) -> str:
    """The loop as a background cell on ``executor``; each step writes the worker's pid
    and the step to ``where`` (the test reads it to know whom to kill, and when)."""
    return loop.replace(
        "%%cache -n resumable", f"%%cache -b -n resumable --executor {executor}"
    ).replace(
        'print(f"step {i}", flush=True)',
        f'open({str(where)!r}, "w").write(f"{{os.getpid()}} {{i}}")',
    )


def _kill_worker_at(where: Path, step: int) -> int:
    """Once the loop wrote ``step`` to ``where``, SIGKILL the worker process running it."""
    deadline = time.time() + 60
    while time.time() < deadline:
        seen = where.read_text().split() if where.exists() else []
        if len(seen) == 2 and int(seen[1]) >= step:
            os.kill(int(seen[0]), signal.SIGKILL)
            return int(seen[0])
        time.sleep(0.02)
    raise TimeoutError(f"the worker did not reach step {step}")


def test_a_dask_worker_killed_mid_loop_resumes_on_another(kernels: Any, tmp_path: Path) -> None:
    """The worker running the cell is killed half-way: dask runs the task again on another
    worker, which resumes at the checkpoint the dead one wrote to the kernel's store; the
    cell ends with the values an uninterrupted run gives, and its card says it resumed.

    The body draws from numpy's generators only: a dask worker's own threads draw from
    the ``random`` module's, so its numbers differ from run to run on dask anyway."""
    numpy_only = LOOP.replace("random.random(), ", "")
    where = tmp_path / "dask-step"
    kernel = kernels(NBCACHE_DASK="local")
    kernel.run(numpy_only.replace("-n resumable --checkpoint 0s", "-n plain --checkpoint off"))
    expected = _digest(kernel.run(DIGEST))
    kernel.run(_elsewhere("dask", where, numpy_only))
    killed = _kill_worker_at(where, 30)
    kernel.run("%nbcache wait resumable")
    assert kernel.run(f"print({TASK}.state)").strip() == "done"
    assert int(where.read_text().split()[0]) != killed  # the end came from another worker
    resumed = kernel.run(f"print({TASK}.resumed)")
    assert 15 <= _resumed_step(resumed) <= 31
    assert _digest(kernel.run(DIGEST)) == expected


def test_a_process_worker_killed_mid_loop_resumes_when_run_again(
    kernels: Any, expected: str, tmp_path: Path
) -> None:
    """The pool's worker running the cell is killed half-way: the task fails, and running
    the cell again resumes (in a new worker) at the checkpoint the dead one wrote."""
    where = tmp_path / "process-step"
    cell = _elsewhere("process", where)
    kernel = kernels()
    kernel.run(cell)
    _kill_worker_at(where, 30)
    kernel.run("%nbcache wait resumable")
    assert kernel.run(f"print({TASK}.state)").strip() == "failed"
    kernel.run(cell)
    kernel.run("%nbcache wait resumable")
    assert kernel.run(f"print({TASK}.state)").strip() == "done"
    assert 15 <= _resumed_step(kernel.run(f"print({TASK}.resumed)")) <= 31
    assert _digest(kernel.run(DIGEST)) == expected


CANCEL_AT = 25
CANCEL = f"""\
import gc, time
from nbcache.ui.cards import WidgetCard
task = {TASK}
while task.done_steps < {CANCEL_AT} and not task.future.done():
    time.sleep(0.01)
(card,) = [o for o in gc.get_objects() if isinstance(o, WidgetCard) and o.task is task]
card.cancel.click()  # what the card's Cancel button runs when it is pressed
"""


def test_cancel_on_a_background_card_resumes_when_run_again(tmp_path: Path, expected: str) -> None:
    """In a real kernel (nbclient), the card's Cancel button stops the background cell
    half-way; running the cell again resumes where Cancel stopped it, the card says so,
    and the cell ends with the values an uninterrupted run gives."""
    background = LOOP.replace("%%cache -n resumable", "%%cache -b -n resumable")
    cells = [
        "%load_ext nbcache",
        background,
        CANCEL,
        f"%nbcache wait resumable\nprint({TASK}.state)",
        background,
        f"%nbcache wait resumable\nprint({TASK}.state)\nprint({TASK}.resumed)",
        DIGEST,
    ]
    env = kernel_env(tmp_path, tmp_path / "store")
    nb = nbrun.run(cells, cwd=tmp_path, env=env, timeout=120)
    assert not nbrun.errors(nb)
    assert nbrun.text_of(nb, 3) == "cancelled\n"
    state, told = nbrun.text_of(nb, 5).splitlines()
    assert state == "done" and CANCEL_AT <= _resumed_step(told) <= CANCEL_AT + 3
    assert _digest(nbrun.text_of(nb, 6)) == expected
    card = _html(_card_of(nb, 4))
    assert 'data-state="done"' in card and f'class="nbcache-card-resumed">{told}<' in card
    # the steps done before Cancel are shown again on the new card, then the rest
    (pane,) = _card_of(nb, 4)["OutputModel"]
    shown = "".join(o.get("text", "") for o in pane["outputs"])
    assert _steps_shown(shown) == list(range(STEPS)) and "resumed" not in shown
