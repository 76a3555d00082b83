"""Checkpoints and resume (``run/checkpoint.py``) against the fake shell: no IPython."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcache.cache.core import Cache
from nbcache.entry.pickling import Pickled
from nbcache.entry.signing import Signer
from nbcache.run import checkpoint, routing, snapshots
from nbcache.run.background import run_in_worker
from nbcache.run.cell import CellRunner
from nbcache.run.cellrun import CellOptions
from nbcache.run.checkpoint import checkpoint_key
from nbcache.run.report import CellReport
from nbcache.run.snapshots import Policy, parse_policy
from nbcache.store import LocalStore
from nbcache.ui.status import status_line
from tests.run.fake_shell import FakeShell

# A loop that draws from both global generators and from a generator object it holds,
# and fails at the step named by FAIL_AT (the environment is not part of a cell's key).
LOOP = """\
import os, random, time
from nbcache import progress
import numpy as np
random.seed(1)
np.random.seed(2)
rng = np.random.default_rng(3)
total = 0
draws = []
print("setup")
for i in progress(range(30)):
    total += i
    draws.append((random.random(), float(np.random.rand()), float(rng.random())))
    print(f"step {i}")
    time.sleep(0.005)
    if i == int(os.environ.get("FAIL_AT", "-1")):
        raise ValueError(f"failed at {i}")
"""


@pytest.fixture(autouse=True)
def _no_fail_at() -> Iterator[None]:
    os.environ.pop("FAIL_AT", None)
    yield
    os.environ.pop("FAIL_AT", None)
    # run_in_worker routes the process's streams, as a worker process's are for good: in
    # this process, put them back (a later test's background cell lost its output).
    routing.uninstall()


def _cells(root: Path) -> tuple[FakeShell, CellRunner, Cache]:
    shell = FakeShell()
    cache = Cache(LocalStore(root), signer=Signer(b"secret"))
    return shell, CellRunner(shell, lambda: cache), cache


def _settle() -> None:
    """Wait for every checkpoint write of this process to end."""
    for writer in list(checkpoint._writers.values()):
        writer.wait(10)


def _uninterrupted(root: Path) -> dict[str, Any]:
    shell, cells, _ = _cells(root)
    cells.run(LOOP, CellOptions(checkpoint="off"))
    return {n: shell.user_ns[n] for n in ("total", "draws", "i")}


def _checkpoints(cache: Cache) -> list[Any]:
    return [r for r in cache.ledger.records() if r.label.startswith("partial:")]


def _resumed(shell: FakeShell) -> list[CellReport]:
    """The reports that said the run resumed (the shell's status lines)."""
    return [r for r in shell.reports if r.outcome == "resumed"]


def test_policy_words_and_durations() -> None:
    assert parse_policy("auto") == "auto" and parse_policy("OFF") == "off"
    assert parse_policy("10m") == 600.0 and parse_policy("0s") == 0.0
    with pytest.raises(ValueError, match="--checkpoint"):
        parse_policy("sometimes")
    assert Policy.of("off") is None
    auto = Policy.of("auto")
    assert auto is not None and auto.interval == snapshots.FLOOR
    auto.snapshot_cost = 1.0  # a 1 s snapshot: at most SHARE of the loop's time
    assert auto.interval == pytest.approx(1.0 / snapshots.SHARE)
    auto.snapshot_cost = 60.0
    assert auto.interval == snapshots.CEILING  # still at least every few minutes
    fixed = Policy.of(600.0)
    assert fixed is not None and fixed.interval == 600.0


def test_the_checkpoint_key_is_its_own() -> None:
    key = "ab" * 16
    assert checkpoint_key(key) != key and checkpoint_key(key) == checkpoint_key(key)
    assert checkpoint_key(key) != checkpoint_key("cd" * 16)


def test_an_exception_in_step_k_resumes_with_the_values_of_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _uninterrupted(tmp_path / "plain")
    shell, cells, cache = _cells(tmp_path / "store")
    os.environ["FAIL_AT"] = "17"
    with pytest.raises(ValueError, match="failed at 17"):
        cells.run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    (partial,) = _checkpoints(cache)
    assert "step" in partial.label and partial.key == checkpoint_key(cells_key(cells, shell))
    capsys.readouterr()
    del os.environ["FAIL_AT"]
    fresh, again, _ = _cells(tmp_path / "store")  # a new kernel on the same store
    again.run(LOOP, CellOptions(checkpoint=0.0))
    err = capsys.readouterr()
    assert "resumed" not in err.err  # the shell's status line says so, not stderr
    (told,) = _resumed(fresh)
    assert told.resumed is not None and told.resumed.total == 30
    step = told.resumed.step
    assert 0 < step <= 17
    assert {"total", "draws", "rng"} <= set(told.names) and told.size > 0
    line = status_line(told)
    assert line.startswith(f"nbcache: resumed at step {step} of 30, saved ")
    assert " ago · restored " in line
    assert fresh.reports[-1].outcome == "computed"
    assert {n: fresh.user_ns[n] for n in expected} == expected
    # the output shown: the setup once, then every step once, in order
    out = err.out.replace("setup\n", "", 1)
    assert out == "".join(f"step {i}\n" for i in range(30))
    _settle()
    assert _checkpoints(cache) == []  # the finished entry replaced it
    # and the finished entry's output is the whole run's
    third, hit, _ = _cells(tmp_path / "store")
    hit.run(LOOP, CellOptions())
    assert third.reports[-1].outcome == "restored"
    assert capsys.readouterr().out == "setup\n" + "".join(f"step {i}\n" for i in range(30))


def cells_key(cells: CellRunner, shell: FakeShell) -> str:
    run = cells.decide(LOOP, CellOptions(force=True)).run  # forced: no lookup
    assert run is not None
    return run.key.key


def test_a_changed_cell_does_not_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _shell, cells, cache = _cells(tmp_path)
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        cells.run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    del os.environ["FAIL_AT"]
    capsys.readouterr()
    changed = LOOP.replace("total = 0", "total = 0 * 1")
    fresh, again, _ = _cells(tmp_path)
    again.run(changed, CellOptions(checkpoint=0.0))
    assert "resumed" not in capsys.readouterr().err and _resumed(fresh) == []
    assert fresh.user_ns["total"] == sum(range(30))
    # the other cell's checkpoint is left alone (it is not ours to remove)
    _settle()
    assert len(_checkpoints(cache)) == 1


def test_force_discards_the_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shell, cells, cache = _cells(tmp_path)
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        cells.run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    del os.environ["FAIL_AT"]
    capsys.readouterr()
    cells.run(LOOP, CellOptions(checkpoint=0.0, force=True))
    assert "resumed" not in capsys.readouterr().err and _resumed(shell) == []
    _settle()
    assert _checkpoints(cache) == []


def test_checkpoint_off_writes_none(tmp_path: Path) -> None:
    _shell, cells, cache = _cells(tmp_path)
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        cells.run(LOOP, CellOptions(checkpoint="off"))
    _settle()
    assert _checkpoints(cache) == []


GENERATOR = """\
from nbcache import progress
seen = []
def items():
    for k in range(12):
        yield k * 10
for x in progress(items(), total=12):
    with inner_lock:
        seen.append(x)
    for y in progress(range(3)):
        pass
    if x == fail_at[0]:
        fail_at[0] = -1
        raise RuntimeError("once")
"""


def test_an_iterable_without_indexing_is_iterated_again_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generator is re-made by the code before the loop and its done items dropped; the
    inner loop does not checkpoint (the outermost does)."""
    shell, cells, cache = _cells(tmp_path)
    shell.user_ns.update(inner_lock=threading.Lock(), fail_at=[70])
    with pytest.raises(RuntimeError):
        cells.run(GENERATOR, CellOptions(checkpoint=0.0, ignore=("inner_lock", "fail_at")))
    _settle()
    (partial,) = _checkpoints(cache)
    assert partial.label.endswith("of 12)")
    cells.run(GENERATOR, CellOptions(checkpoint=0.0, ignore=("inner_lock", "fail_at")))
    (told,) = _resumed(shell)
    assert told.resumed is not None and told.resumed.total == 12
    assert shell.user_ns["seen"] == [k * 10 for k in range(12)]


class _SlowCache:
    """Stands for the cache: each write waits until the test lets it go."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.steps: list[int] = []

    def overwrite(self, key: str, value: Any, meta: dict[str, Any], **kw: Any) -> int:
        self.go.wait(10)
        self.steps.append(meta["step"])
        return 1

    def remove(self, key: str) -> None:
        self.steps.append(-1)


def test_the_writer_never_queues_more_than_one_snapshot() -> None:
    """While one write runs, a newer snapshot replaces the one waiting; the loop is never
    held up; closing removes the checkpoint once the last write ended."""
    slow = _SlowCache()
    writer = snapshots.Writer(slow, "k" * 32, Policy())  # type: ignore[arg-type]
    snap = [snapshots.Snapshot(n, Pickled(b""), {"step": n}) for n in range(1, 5)]
    start = time.perf_counter()
    for s in snap:
        writer.submit(s)
    assert time.perf_counter() - start < 0.5 and writer.busy
    slow.go.set()
    assert writer.wait(10)
    assert slow.steps == [1, 4] and writer.dropped == 2
    writer.close()
    assert slow.steps == [1, 4, -1]


def test_the_loop_goes_on_while_a_checkpoint_is_written(tmp_path: Path) -> None:
    """A write that takes long does not hold the loop: it finishes its steps meanwhile."""
    shell, cells, cache = _cells(tmp_path)
    held: list[tuple[int, int]] = []  # the step when the first write began, and when it went on
    real_overwrite = cache.overwrite

    def overwrite(key: str, value: Any, meta: Any = None, **kw: Any) -> int:
        if isinstance(meta, dict) and meta.get("kind") == "checkpoint" and not held:
            # Hold the first write until the loop has gone three steps further; if the loop
            # waited for the write, it never would (the test then fails after the deadline).
            began = shell.user_ns.get("i", -1)
            deadline = time.monotonic() + 30
            while shell.user_ns.get("i", -1) < began + 3 and time.monotonic() < deadline:
                time.sleep(0.001)
            held.append((began, shell.user_ns.get("i", -1)))
        return real_overwrite(key, value, meta, **kw)

    cache.overwrite = overwrite  # type: ignore[method-assign]
    cell = (
        "import time\nfrom nbcache import progress\nacc = []\n"
        "for i in progress(range(40)):\n    acc.append(i)\n    time.sleep(0.005)\n"
    )
    cells.run(cell, CellOptions(checkpoint=0.0))
    assert shell.user_ns["acc"] == list(range(40))
    assert held, "no checkpoint was written"
    began, went_on = held[0]
    assert began < 37 and went_on >= began + 3  # it went on meanwhile


BACKGROUND = """\
import time
from nbcache import progress
total = 0
for i in progress(range(200)):
    total += i
    time.sleep(0.01)
"""


def test_a_cancelled_background_cell_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cancel keeps the step it stopped at; the next run resumes there, on its card."""
    shell2, cells2, cache = _cells(tmp_path)
    cells2.run(BACKGROUND, CellOptions(background=True, name="bg2", checkpoint="10m"))
    card = shell2.cards[0]
    deadline = time.time() + 20
    while card.task.done_steps < 30 and time.time() < deadline:
        time.sleep(0.01)
    card.task.cancel()
    cells2.wait("bg2")
    assert card.task.state == "cancelled"
    _settle()
    (partial,) = _checkpoints(cache)
    step = int(partial.label.split("step ")[1].split()[0])
    assert step >= 30
    shell3, cells3, _ = _cells(tmp_path)
    cells3.run(BACKGROUND, CellOptions(background=True, name="bg3", checkpoint="10m"))
    cells3.wait("bg3")
    card3 = shell3.cards[0]
    # the card says where it resumed (its task, while it runs; its report, at the end),
    # and nothing of it goes into the cell's output
    assert card3.task.resumed.startswith(f"resumed at step {step} of 200, saved ")
    (report,) = card3.reports
    assert report.resumed is not None and report.resumed.step == step
    assert not any("resumed" in str(p) for _, *p in card3.outputs)
    assert shell3.reports == [] and shell3.user_ns["total"] == sum(range(200))


def test_checkpoints_are_listed_pruned_by_age_and_cleared(tmp_path: Path) -> None:
    """A checkpoint is an entry in the store: listed as partial with its step, counted in
    the store's size, removed by prune --older-than and by clear."""
    _, cells, cache = _cells(tmp_path)
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        cells.run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    (partial,) = _checkpoints(cache)
    assert partial.size > 0 and " of 30)" in partial.label
    assert cache.ledger.prune(older_than=3600) == []  # young: kept
    time.sleep(0.05)
    assert cache.ledger.prune(older_than=0.01) == [partial.key]
    with pytest.raises(ValueError):
        cells.run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    assert len(_checkpoints(cache)) == 1
    cache.clear()
    assert _checkpoints(cache) == []


TQDM = """\
import os, random
from tqdm import tqdm, trange
random.seed(5)
acc = []
for i in tqdm(range(25), disable=False, file=open(os.devnull, "w")):
    acc.append(random.random())
    for j in trange(2, file=open(os.devnull, "w")):
        pass
    if i == int(os.environ.get("FAIL_AT", "-1")):
        raise ValueError(i)
"""


def test_a_tqdm_loop_checkpoints_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    plain, cells, _ = _cells(tmp_path / "plain")
    cells.run(TQDM, CellOptions(checkpoint="off"))
    _, cells, cache = _cells(tmp_path / "store")
    os.environ["FAIL_AT"] = "14"
    with pytest.raises(ValueError):
        cells.run(TQDM, CellOptions(checkpoint=0.0))
    _settle()
    (partial,) = _checkpoints(cache)
    assert partial.label.endswith("of 25)")
    del os.environ["FAIL_AT"]
    fresh, again, _ = _cells(tmp_path / "store")
    again.run(TQDM, CellOptions(checkpoint=0.0))
    assert len(_resumed(fresh)) == 1
    assert fresh.user_ns["acc"] == plain.user_ns["acc"]


def test_a_resumed_run_counts_the_time_of_the_runs_before_it(tmp_path: Path) -> None:
    """The entry a resumed run stores says what computing took in all, interrupted runs
    included: that is the time a later hit saves (and what eviction weighs)."""
    _shell, cells, _cache = _cells(tmp_path / "store")
    slow = LOOP.replace("time.sleep(0.005)", "time.sleep(0.02)")
    os.environ["FAIL_AT"] = "25"
    with pytest.raises(ValueError):
        cells.run(slow, CellOptions(checkpoint=0.0))
    _settle()
    del os.environ["FAIL_AT"]
    fresh, again, _ = _cells(tmp_path / "store")
    again.run(slow, CellOptions(checkpoint=0.0))
    told, report = fresh.reports
    assert told.outcome == "resumed"
    # Resumed near step 25 of 30: this run itself loops ~5 steps (0.1 s), all of them 30.
    assert report.outcome == "computed" and report.seconds >= 29 * 0.02


REMOTE = """\
import random
from nbcache import progress
random.seed(7)
total = 0
draws = []
for i in progress(range(40)):
    total += i
    draws.append(random.random())
    if i == fail_at:
        raise ValueError(f"failed at {i}")
"""


def _remote_cells(root: Path, signer: Signer) -> tuple[FakeShell, CellRunner, Cache]:
    """A shell whose cache is signed with the secret the workers hold (NBCACHE_SECRET)."""
    shell = FakeShell()
    cache = Cache(LocalStore(root), signer=signer)
    return shell, CellRunner(shell, lambda: cache), cache


def test_a_process_background_cell_checkpoints_in_the_worker_and_resumes(
    tmp_path: Path, signer: Signer
) -> None:
    """On the process pool, the worker writes the checkpoints to the kernel's store; a
    failed run leaves one, and the next run (same key) resumes there, in a worker, with
    the values of an uninterrupted run; the card says where it resumed."""
    plain = FakeShell()
    plain.user_ns["fail_at"] = -1
    plain.execute(REMOTE)
    shell, cells, cache = _remote_cells(tmp_path / "store", signer)
    options = CellOptions(
        background=True, executor="process", checkpoint=0.0, ignore=("fail_at",), name="far"
    )
    shell.user_ns["fail_at"] = 23
    cells.run(REMOTE, options)
    cells.wait("far")
    assert shell.cards[0].task.state == "failed"
    (partial,) = _checkpoints(cache)  # written by the worker, before it let go
    step = int(partial.label.split("step ")[1].split()[0])
    assert 0 < step <= 23 and partial.label.endswith("of 40)")
    again, cells2, _ = _remote_cells(tmp_path / "store", signer)
    again.user_ns["fail_at"] = -1
    cells2.run(REMOTE, options)
    cells2.wait("far")
    card = again.cards[0]
    assert card.task.state == "done", card.task.future.exception()
    assert card.task.resumed.startswith(f"resumed at step {step} of 40, saved ")
    (report,) = card.reports
    assert report.resumed is not None and report.resumed.step == step
    assert {n: again.user_ns[n] for n in ("total", "draws", "i")} == {
        n: plain.user_ns[n] for n in ("total", "draws", "i")
    }
    assert _checkpoints(cache) == []  # the finished entry replaced it


def test_a_worker_with_another_secret_writes_no_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker whose secret is not the kernel's would write checkpoints the kernel
    refuses: it writes none and the cell says so; the body still runs."""
    _shell, cells, cache = _cells(tmp_path)  # signed with b"secret", not NBCACHE_SECRET
    run = cells.decide(BACKGROUND, CellOptions(checkpoint=0.0, force=True)).run
    assert run is not None
    remote = checkpoint.remote_checkpoints(cache, run)
    assert remote is not None and remote.location == cache.store.location  # type: ignore[union-attr]
    made = run_in_worker(BACKGROUND.replace("200", "5"), {}, ["total", "i"], "<cell>", remote)
    assert made.vars["total"] == sum(range(5))
    assert "not checkpointed" in made.stderr and "secret is not the kernel's" in made.stderr
    assert _checkpoints(cache) == []


def test_quiet_silences_the_resume_line(tmp_path: Path) -> None:
    """``-q`` silences a cell's status lines, the one that says it resumed too."""
    _, cells, _ = _cells(tmp_path)
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        cells.run(LOOP, CellOptions(checkpoint=0.0, quiet=True))
    _settle()
    del os.environ["FAIL_AT"]
    fresh, again, _ = _cells(tmp_path)
    again.run(LOOP, CellOptions(checkpoint=0.0, quiet=True))
    assert fresh.reports == [] and fresh.user_ns["total"] == sum(range(30))
    loud, third, _ = _cells(tmp_path / "other")
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        third.run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    del os.environ["FAIL_AT"]
    third.run(LOOP, CellOptions(checkpoint=0.0))
    assert [r.outcome for r in loud.reports] == ["resumed", "computed"]


class _PublishingShell(FakeShell):
    """Shows each report through the display publisher, as the IPython shell does."""

    def report(self, report: CellReport) -> None:
        super().report(report)
        self.display_publisher.publish({"text/plain": status_line(report)}, {"nbcache": {}})


def test_the_resume_line_is_not_the_cells_output(tmp_path: Path) -> None:
    """The resume status goes through the same publisher as the body's displays, but it
    is not the body's: the finished entry's output (replayed on a hit) has none of it."""
    cache = Cache(LocalStore(tmp_path), signer=Signer(b"secret"))
    os.environ["FAIL_AT"] = "10"
    with pytest.raises(ValueError):
        CellRunner(FakeShell(), lambda: cache).run(LOOP, CellOptions(checkpoint=0.0))
    _settle()
    del os.environ["FAIL_AT"]
    shell = _PublishingShell()
    CellRunner(shell, lambda: cache).run(LOOP, CellOptions(checkpoint=0.0))
    assert "resumed at step" in str(shell.display_publisher.shown[0])  # it was shown
    hit = FakeShell()
    CellRunner(hit, lambda: cache).run(LOOP, CellOptions(checkpoint=0.0))
    assert hit.reports[-1].outcome == "restored"
    assert hit.display_publisher.shown == []  # the loop showed no display; neither does the hit


def test_a_loop_that_changes_a_setting_resumes_in_the_same_kernel(tmp_path: Path) -> None:
    """What the cell itself set (print options) is not "a setting an earlier cell changed"
    to its own next attempt: its checkpoints must not count it while the loop runs."""
    import numpy as np

    from nbcache.run.effects import forget_seeds

    cell = LOOP.replace(
        "import numpy as np\n", "import numpy as np\nnp.set_printoptions(precision=3)\n"
    )
    options = np.get_printoptions()
    forget_seeds()
    try:
        shell, cells, _ = _cells(tmp_path / "store")
        os.environ["FAIL_AT"] = "17"
        with pytest.raises(ValueError, match="failed at 17"):
            cells.run(cell, CellOptions(checkpoint=0.0))
        _settle()
        del os.environ["FAIL_AT"]
        cells.run(cell, CellOptions(checkpoint=0.0))
        (told,) = _resumed(shell)
        assert told.resumed is not None and 0 < told.resumed.step <= 17
    finally:
        np.set_printoptions(**options)
        forget_seeds()
