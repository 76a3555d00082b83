"""Background cells: how soon the kernel is free, and how much a busy task slows the rest.

- submitting ``%%cache -b`` on a cell that then works for a second: the time until
  the cell returns and the kernel takes the next cell;
- a trivial cell (summing 10,000 ints) run again and again, alone and while a
  numpy-heavy background cell (sorting and multiplying arrays) runs.
"""

from __future__ import annotations

import time
from typing import Any

from .cells import _run, _shell
from .common import Group, Row, Settings, Target

__all__ = ["GROUP", "NAMES"]

B_SUBMIT = "%%cache -b returns (body works 1 s)"
B_ALONE = "trivial cell, kernel idle"
B_BUSY = "trivial cell, numpy task in the background"
B_SLOWDOWN = "slowdown of the trivial cell"

NAMES = (B_SUBMIT, B_ALONE, B_BUSY, B_SLOWDOWN)

SUBMIT_CELL = "%%cache -b -q -f -n submit{i}\ntime.sleep(1.0)\ndone_{i} = True\n"
BUSY_CELL = (
    "%%cache -b -q -f -n busy{i}\nrng = np.random.default_rng({i})\nm = rng.random((600, 600))\n"
    "deadline = time.time() + SECONDS\nwhile time.time() < deadline:\n"
    "    np.sort(rng.random(2_000_000))\n    m = m @ m / 600\n"
)
TRIVIAL = "total = sum(range(10_000))\n"
TRIVIAL_RUNS = 200


def _trivial(shell: Any) -> float:
    """Mean seconds of one trivial cell over TRIVIAL_RUNS runs."""
    start = time.perf_counter()
    for _ in range(TRIVIAL_RUNS):
        _run(shell, TRIVIAL)
    return (time.perf_counter() - start) / TRIVIAL_RUNS


def _wait_all(shell: Any) -> None:
    shell.run_line_magic("nbcache", "wait")


def run(settings: Settings, busy_seconds: float = 3.0) -> list[Row]:
    submit: list[float] = []
    alone: list[float] = []
    busy: list[float] = []
    with _shell(settings) as shell:
        for i in range(settings.repeat):
            settings.say(f"background: submit ({i + 1}/{settings.repeat})")
            start = time.perf_counter()
            _run(shell, SUBMIT_CELL.format(i=i))
            submit.append(time.perf_counter() - start)
            _wait_all(shell)
            settings.say(f"background: trivial cells ({i + 1}/{settings.repeat})")
            alone.append(_trivial(shell))
            _run(shell, BUSY_CELL.format(i=i).replace("SECONDS", str(busy_seconds)))
            busy.append(_trivial(shell))
            _wait_all(shell)
    slowdown = min(busy) / min(alone)
    return [
        Row(
            "background",
            B_SUBMIT,
            tuple(submit),
            share=min(submit),
            unit="s",
            target=Target("<=", 0.05, "≤ 50 ms"),
        ),
        Row("background", B_ALONE, tuple(alone)),
        Row("background", B_BUSY, tuple(busy)),
        Row(
            "background",
            B_SLOWDOWN,
            ratio=slowdown,
            target=Target("<=", 1.5, "≤ 1.50×"),
            versus="busy / idle",
        ),
    ]


GROUP = Group(
    "background",
    "background cells",
    run,
    notes=(
        "Submit: from running a %%cache -b cell to the shell taking the next cell, in an "
        "IPython shell in this process, with the text card (no front end).",
        f"Trivial cell: the mean of {TRIVIAL_RUNS} runs of `sum(range(10_000))`, with the "
        "kernel idle, then while a background cell sorts and multiplies numpy arrays on the "
        "thread executor. The slowdown row is busy / idle, lower is better.",
    ),
)
