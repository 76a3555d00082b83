"""How ``digest`` scales with the size of an object graph, against joblib.hash.

- an unshared graph: a list of distinct small tuples and dicts;
- a shared graph: a DAG of layers, each a list holding the whole previous layer
  twice and some new ints, so the bottom layer is reachable by 2^layers paths;
  a walk that hashes a shared object once per path does work exponential in
  the depth, one that remembers what it hashed does work linear in the objects;
- a matplotlib Figure with axes and a line, and a fitted scikit-learn estimator.

Each row runs in its own child process, which builds the value (untimed), then
times ``joblib.hash`` and ``digest`` in turns.  A run that takes longer than
``TIMEOUT`` seconds is killed and reported as a timeout, so one hang costs the
report ``TIMEOUT`` seconds, not minutes.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import Group, Row, Settings, Target

__all__ = ["DEFAULT_SIZES", "GROUP", "OBJECTS", "SIZES", "TIMEOUT", "names", "run"]

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
SIZES: tuple[int, ...] = DEFAULT_SIZES  # --objects sets it
TIMEOUT = 20.0  # seconds one timed run may take before its process is killed
BUILD_TIMEOUT = 120.0  # seconds to start the child and build the value

KINDS = ("unshared", "shared", "id_ints", "odd_ints")
OBJECTS = ("figure", "forest")
OBJECT_TITLES = {
    "figure": "matplotlib Figure (subplots + plot, Agg)",
    "forest": "fitted sklearn RandomForestClassifier (10 trees)",
}
GROUP_TITLES = {
    "unshared": "unshared graph",
    "shared": "shared DAG",
    "id_ints": "flat list of ints ≥ 2^20, multiples of 8",
    "odd_ints": "flat list of odd ints ≥ 2^20",
    "objects": "real objects",
}

GROWTH_TARGET = Target("<=", 2.0, "≤ 2.00×")
# nbcache's digest at most twice pickle.dumps' time: pickle's time / nbcache's ≥ 0.5.
PICKLE_TARGET = Target(">=", 0.5, "≤ 2× pickle's time")

NB = "nbcache"
JL = "joblib"
PK = "pickle"


def _nb_name(n: int) -> str:
    return f"nbcache digest, {n:,} objects"


def _jl_name(n: int) -> str:
    return f"joblib.hash, {n:,} objects"


def _pk_name(n: int) -> str:
    return f"pickle.dumps (protocol 5), {n:,} objects"


def _growth_name(sizes: Sequence[int]) -> str:
    return f"per-object time, {sizes[-1]:,} / {sizes[0]:,} objects"


def names(sizes: Sequence[int] = DEFAULT_SIZES) -> list[tuple[str, str]]:
    """(group, name) of every row, in order."""
    sizes = sorted(set(sizes))
    rows = []
    for kind in KINDS:
        for n in sizes:
            rows += [
                (GROUP_TITLES[kind], _nb_name(n)),
                (GROUP_TITLES[kind], _jl_name(n)),
                (GROUP_TITLES[kind], _pk_name(n)),
            ]
        if len(sizes) > 1:
            rows.append((GROUP_TITLES[kind], _growth_name(sizes)))
    for what in OBJECTS:
        title = OBJECT_TITLES[what]
        rows += [
            ("real objects", f"nbcache digest({title})"),
            ("real objects", f"joblib.hash({title})"),
        ]
    return rows


# -- the values (built in the child) ----------------------------------------------


def unshared_graph(n: int) -> list[Any]:
    """``n`` objects: a list of (n - 1) // 3 items, tuples (int, str) and dicts {str: int}."""
    items: list[Any] = []
    for i in range((n - 1) // 3):
        base = 1000 + i  # above the small-int cache: a distinct object
        items.append((base, f"s{i}") if i % 2 == 0 else {f"k{i}": base})
    return items


def shared_layers(n: int) -> int:
    return max(2, round(math.log2(max(n, 4))))


def shared_graph(n: int) -> list[Any]:
    """About ``n`` objects in log2(n) layers; each layer is [previous, previous, new ints...].

    The bottom layer's ints are reachable by 2^(layers-1) paths, so a walk without
    memory visits about n * 2^layers / layers ~ n^2 / log2(n) objects.
    """
    layers = shared_layers(n)
    width = max(1, n // layers - 1)
    layer: list[Any] = [1_000_000 + j for j in range(width)]
    for depth in range(1, layers):
        start = 1_000_000 + depth * width
        layer = [layer, layer, *range(start, start + width)]
    return layer


def id_ints_graph(n: int) -> list[int]:
    """``n`` ints in the range where ids fall (8-aligned, ≥ 2^20): each may be an id()."""
    return [(1 << 21) + 8 * i for i in range(max(1, n - 1))]


def odd_ints_graph(n: int) -> list[int]:
    """The same ints plus one: odd, so none can be an id()."""
    return [(1 << 21) + 8 * i + 1 for i in range(max(1, n - 1))]


def real_object(what: str) -> Any:
    import numpy as np

    if what == "figure":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        x = np.linspace(0, 10, 200)
        ax.plot(x, np.sin(x), label="sin")
        ax.set_title("a line")
        return fig
    rng = np.random.default_rng(0)
    features = rng.random((300, 8))
    labels = (features[:, 0] + features[:, 1] > 1).astype(int)
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(
        features, labels
    )


def _child(kind: str, n: int, repeat: int, budget: float) -> None:
    """Build the value, then time joblib.hash and digest in turns; one JSON line per event.

    A tool that raises is reported once and left out of later rounds.  ``hang`` (for the
    tests) builds nothing and never answers.
    """
    start = time.perf_counter()
    import joblib

    from .common import digest

    if kind == "hang":
        time.sleep(3600)
    value = real_object(kind) if kind in OBJECTS else globals()[f"{kind}_graph"](n)
    _say({"built": time.perf_counter() - start})
    tools = {JL: joblib.hash, NB: digest, PK: functools.partial(pickle.dumps, protocol=5)}
    spent = 0.0
    for i in range(repeat):
        for tool, fn in list(tools.items()):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                fn(value)
            except Exception as exc:  # noqa: BLE001 - reported in the table, not raised
                _say({"tool": tool, "error": f"raises {type(exc).__name__}: {exc}"})
                del tools[tool]
                continue
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            spent += seconds
            _say({"tool": tool, "seconds": seconds, "cpu": cpu})
        if not tools or (i + 1 < repeat and spent > budget):
            break


def _say(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


# -- the parent: one child per row, with a timeout --------------------------------


@dataclass
class Result:
    """What one child measured: seconds of each tool's runs, and whether a run timed out."""

    times: dict[str, list[float]] = field(default_factory=lambda: {NB: [], JL: [], PK: []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {NB: [], JL: [], PK: []})
    raised: dict[str, str] = field(default_factory=dict)  # tool -> what it raised
    timed_out: str = ""  # the tool whose run was killed
    error: str = ""


def measure_child(kind: str, n: int, repeat: int) -> Result:
    root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable,
        "-m",
        "benchmarks.hashing_scale",
        kind,
        str(n),
        str(repeat),
        str(TIMEOUT),
    ]
    proc = subprocess.Popen(
        command,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    result = Result()
    expected = JL  # joblib runs first in each round
    wait = BUILD_TIMEOUT
    try:
        while True:
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                result.timed_out = expected if wait == TIMEOUT else "build"
                break
            if line is None:
                break
            event = json.loads(line)
            if "tool" in event:
                if "error" in event:
                    result.raised[event["tool"]] = str(event["error"])
                else:
                    result.times[event["tool"]].append(float(event["seconds"]))
                    result.cpu[event["tool"]].append(float(event["cpu"]))
                expected = _next_tool(event["tool"], result.raised)
            wait = TIMEOUT
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stderr = proc.stderr.read() if proc.stderr is not None else ""
    if not result.timed_out and proc.returncode != 0:
        result.error = (stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return result


def _next_tool(tool: str, raised: dict[str, str]) -> str:
    """Which tool the child times after ``tool`` (they take turns; one that raised is out)."""
    left = [t for t in (JL, NB, PK) if t not in raised]
    if not left:
        return tool
    if tool not in left:
        return left[0]
    return left[(left.index(tool) + 1) % len(left)]


def _child_env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}


def _status(result: Result, tool: str) -> str:
    if tool in result.raised:
        return _short(result.raised[tool])
    if result.error:
        return _short(f"error: {result.error}")
    if result.timed_out in (tool, "build"):
        return f"timeout (> {TIMEOUT:.0f} s)" if result.timed_out == tool else "build timed out"
    return ""


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _graph_rows(settings: Settings, kind: str, sizes: Sequence[int]) -> list[Row]:
    group = GROUP_TITLES[kind]
    rows = []
    per_object: dict[int, float | None] = {}
    for n in sizes:
        settings.say(f"hashing_scale: {group}, {n:,} objects")
        result = measure_child(kind, n, settings.repeat)
        nb, jl, pk = result.times[NB], result.times[JL], result.times[PK]
        per_object[n] = min(nb) / n if nb else None
        rows.append(
            Row(
                group,
                _nb_name(n),
                tuple(nb),
                share=per_object[n],
                unit="s",
                versus="per object" if nb else "",
                status=_status(result, NB),
                cpu=tuple(result.cpu[NB]),
            )
        )
        ratio = versus = None
        if jl and nb:
            ratio, versus = min(jl) / min(nb), "nbcache's speed / this"
        elif jl and result.timed_out == NB:
            ratio, versus = min(jl) / TIMEOUT, "nbcache's speed / this, at most (nbcache timed out)"
        rows.append(
            Row(
                group,
                _jl_name(n),
                tuple(jl),
                ratio=ratio,
                versus=versus or "",
                status=_status(result, JL),
                cpu=tuple(result.cpu[JL]),
            )
        )
        ratio = versus = None
        if pk and nb:
            ratio, versus = min(pk) / min(nb), "nbcache's speed / this"
        elif pk and result.timed_out == NB:
            ratio, versus = min(pk) / TIMEOUT, "nbcache's speed / this, at most (nbcache timed out)"
        rows.append(
            Row(
                group,
                _pk_name(n),
                tuple(pk),
                ratio=ratio,
                target=PICKLE_TARGET,
                versus=versus or "",
                status=_status(result, PK),
                cpu=tuple(result.cpu[PK]),
            )
        )
    if len(sizes) > 1:
        ratio, versus, status = _growth(sizes, per_object)
        rows.append(
            Row(
                group,
                _growth_name(sizes),
                ratio=ratio,
                target=GROWTH_TARGET,
                versus=versus,
                status=status,
            )
        )
    return rows


def _growth(
    sizes: Sequence[int], per_object: dict[int, float | None]
) -> tuple[float | None, str, str]:
    """(ratio, versus, status) of the growth row: largest over smallest per-object time.

    When larger graphs timed out, the figure is the larger of two lower bounds: the
    growth up to the largest graph that finished, and ``TIMEOUT / n`` of the largest
    over the smallest.  A lower bound within the target proves nothing: no figure then.
    """
    first, last = per_object[sizes[0]], per_object[sizes[-1]]
    if first is None:
        return None, "", "the smallest graph timed out"
    if last is not None:
        return last / first, "largest / smallest graph", ""
    done = [n for n in sizes if per_object[n] is not None]
    lost = [n for n in sizes if per_object[n] is None]
    bound = max(TIMEOUT / sizes[-1] / first, per_object[done[-1]] / first)  # type: ignore[operator]
    if GROWTH_TARGET.met(bound):
        return None, "", f"unknown: {', '.join(f'{n:,}' for n in lost)} timed out"
    return bound, f"at least ({', '.join(f'{n:,}' for n in lost)} timed out)", ""


def _object_rows(settings: Settings) -> list[Row]:
    rows = []
    for what in OBJECTS:
        title = OBJECT_TITLES[what]
        settings.say(f"hashing_scale: {title}")
        result = measure_child(what, 0, settings.repeat)
        nb, jl = result.times[NB], result.times[JL]
        rows.append(
            Row("real objects", f"nbcache digest({title})", tuple(nb), status=_status(result, NB))
        )
        ratio, versus = None, ""
        if jl and nb:
            ratio, versus = min(jl) / min(nb), "nbcache's speed / this"
        elif jl and result.timed_out == NB:
            ratio, versus = min(jl) / TIMEOUT, "nbcache's speed / this, at most (nbcache timed out)"
        rows.append(
            Row(
                "real objects",
                f"joblib.hash({title})",
                tuple(jl),
                ratio=ratio,
                versus=versus,
                status=_status(result, JL),
            )
        )
    return rows


def run(settings: Settings, sizes: Sequence[int] | None = None) -> list[Row]:
    chosen = sorted(set(sizes if sizes is not None else SIZES))
    rows = []
    for kind in KINDS:
        rows += _graph_rows(settings, kind, chosen)
    return rows + _object_rows(settings)


GROUP = Group(
    "hashing_scale",
    "digest against the size of an object graph",
    lambda settings: run(settings),
    notes=(
        "Each row runs in a fresh child process that builds the value untimed, then times "
        "joblib.hash and nbcache's digest in turns (up to --repeat rounds, fewer once a row has "
        f"spent {TIMEOUT:.0f} s). A run still going after {TIMEOUT:.0f} s is killed: the row "
        "says timeout.",
        "The unshared graph is a list of distinct items, alternately a tuple (int, str) and a "
        "dict {str: int}: n objects in (n - 1) / 3 items. The figure on a digest row is its "
        "best time per object.",
        "The shared DAG has round(log2 n) layers of about n / layers objects; each layer is a "
        "list [previous layer, previous layer, new ints...], so the bottom layer is reachable "
        "by 2^(layers - 1) paths. Hashing every shared object once makes the time linear in n; "
        "hashing it once per path makes it about n² / log2 n.",
        "The growth row is the per-object time of the largest graph over that of the smallest "
        "(1 = linear; the target allows 2× for caches and memory). When larger graphs timed "
        "out, the figure is a lower bound: the growth up to the largest graph that finished, "
        f"or {TIMEOUT:.0f} s / n of the largest over the smallest, whichever is higher (a bound "
        "within the target proves nothing and shows as unknown).",
        "The pickle.dumps rows pickle the same value (protocol 5) in the same child, in turn "
        "with the others: the floor a walk in C reaches. Target: nbcache's digest at most twice "
        "pickle's time (the figure ≥ 0.5×).",
        "The flat lists of ints: n − 1 ints from 2^21, all multiples of 8 (the range and "
        "alignment of id() values, which the digest looks for among the value's parts), and the "
        "same plus one (odd, so never an id).",
        "CPU is the child's own process time: on a loaded machine the wall clock also counts "
        "waiting for a CPU.",
        "The real objects: a matplotlib Figure from plt.subplots() with one plotted line "
        "(Agg backend); a RandomForestClassifier(n_estimators=10, max_depth=5) fitted on "
        "300 x 8 random features. scikit-learn is not in the test extra: without it that row "
        "reports an error.",
    ),
)


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
