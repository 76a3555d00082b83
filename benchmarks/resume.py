"""Resumable cells: what checkpoints cost a long loop, and how fast a run resumes.

A loop of :data:`STEPS` steps over ``nbcache.progress`` whose state is a
:data:`STATE_BYTES` numpy array changed in place at every step (plus a little
CPU work per step), run in an IPython shell in this process:

- plain, without ``%%cache``; then as a ``%%cache`` cell with the default
  (cost-aware) policy: the total overhead (checkpoints, and storing the
  finished entry) against the plain loop;
- the time the loop waits per checkpoint (taking the snapshot on the loop's
  thread; the write runs in the background);
- a run that fails at 60% of its steps, then the same cell again: the time from
  the loop's start to its first resumed step (finding, reading and restoring
  the checkpoint).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

from nbcache.run import checkpoint

from .cells import _run, _shell
from .common import Group, Row, Settings, Target

__all__ = ["GROUP", "NAMES"]

STEPS = 1000
STATE_BYTES = 100_000_000
STEP_SECONDS = 0.03  # CPU work per step, besides changing the state

R_PLAIN = "loop without nbcache"
R_CACHED = "%%cache, default checkpoints"
R_OVERHEAD = "overhead of %%cache with checkpoints"
R_PAUSE = "loop waits per checkpoint"
R_RESUME = "resume: loop start to first resumed step"

NAMES = (R_PLAIN, R_CACHED, R_OVERHEAD, R_PAUSE, R_RESUME)

LOOP = """\
import os
from nbcache import progress
state = np.zeros({n} // 8)
for i in progress(range({steps})):
    state[(i * 7919) % state.size :: 997] += 1.0
    deadline = time.perf_counter() + {work}
    while time.perf_counter() < deadline:
        np.sort(np.arange(2000.0)[::-1])
    if i == int(os.environ.get("RESUME_BENCH_FAIL_AT", "-1")):
        raise RuntimeError("stopped for the benchmark")
"""


class _Watch:
    """The checkpointers made while the block runs (what each did is on it)."""

    def __enter__(self) -> list[checkpoint.Checkpointer]:
        made: list[checkpoint.Checkpointer] = []
        self._init = init = checkpoint.Checkpointer.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            made.append(self)

        checkpoint.Checkpointer.__init__ = __init__  # type: ignore[method-assign]
        return made

    def __exit__(self, *exc: Any) -> None:
        checkpoint.Checkpointer.__init__ = self._init  # type: ignore[method-assign]


def _settle(made: list[checkpoint.Checkpointer]) -> None:
    """Wait for their writes (so the next run finds the checkpoint, and timings are apart)."""
    for one in made:
        if one.writer is not None:
            one.writer.wait(600)


def run(settings: Settings) -> list[Row]:
    import os

    cell = LOOP.format(n=STATE_BYTES, steps=STEPS, work=STEP_SECONDS)
    plain: list[float] = []
    cached: list[float] = []
    pauses: list[float] = []
    resumes: list[float] = []
    with _shell(settings) as shell:
        for i in range(settings.repeat):
            settings.say(f"resume: plain loop ({i + 1}/{settings.repeat})")
            start = time.perf_counter()
            _run(shell, cell)
            plain.append(time.perf_counter() - start)
            settings.say(f"resume: %%cache loop ({i + 1}/{settings.repeat})")
            with _Watch() as made:
                start = time.perf_counter()
                _run(shell, f"%%cache -q -f -n resume-bench\n{cell}")
                cached.append(time.perf_counter() - start)
            _settle(made)
            pauses += [p for one in made for p in one.pauses]
            settings.say(f"resume: a run that fails, then resumes ({i + 1}/{settings.repeat})")
            failing = f"%%cache -q -n resume-bench-{i}\nrun_{i} = {i}\n{cell}"  # its own key
            os.environ["RESUME_BENCH_FAIL_AT"] = str(int(STEPS * 0.6))
            try:
                with _Watch() as made, contextlib.suppress(RuntimeError):
                    _run(shell, failing)  # stops at 60%: RuntimeError
            finally:
                del os.environ["RESUME_BENCH_FAIL_AT"]
            _settle(made)
            with _Watch() as made:
                _run(shell, failing)
            _settle(made)
            resumes += [one.resume_seconds for one in made if one.resume_seconds is not None]
    overhead = min(cached) / min(plain) - 1.0
    return [
        Row("resume", R_PLAIN, tuple(plain)),
        Row("resume", R_CACHED, tuple(cached)),
        Row(
            "resume",
            R_OVERHEAD,
            share=max(overhead, 0.0),
            target=Target("<=", 0.05, "≤ 5%"),
            versus="best %%cache / best plain - 1",
        ),
        Row(
            "resume",
            R_PAUSE,
            tuple(pauses),
            share=statistics.median(pauses) if pauses else None,
            unit="s",
            status="" if pauses else "no checkpoint was due",
        ),
        Row(
            "resume",
            R_RESUME,
            tuple(resumes),
            share=min(resumes) if resumes else None,
            unit="s",
            status="" if resumes else "did not resume",
        ),
    ]


GROUP = Group(
    "resume",
    "resumable cells",
    run,
    notes=(
        f"A {STEPS}-step loop over nbcache.progress whose state is a "
        f"{STATE_BYTES // 1_000_000} MB numpy array changed in place each step, with "
        f"{STEP_SECONDS * 1000:.0f} ms of CPU work per step, in an IPython shell in this "
        "process; the store on the benchmark's folder.",
        "Overhead: the best %%cache run (default checkpoint policy, -f so it computes; it "
        "also stores the finished 100 MB entry) against the best plain run.",
        "Waits: the loop thread's time per checkpoint (gathering the variables, pickling, "
        "copying the array); writing runs on its own thread meanwhile.",
        "Resume: a run stopped by an exception at 60% of its steps, then the same cell: "
        "from the loop's start to its first resumed step (read, verify, restore).",
    ),
    disk_factor=0.0,
    memory_factor=0.0,
)
