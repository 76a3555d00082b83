"""What every benchmark group shares: settings, timing, result rows, the Markdown table.

A group is a module with a ``run(settings) -> list[Row]`` function, registered in
:mod:`benchmarks.__main__`.  Rows carry raw seconds; ratios and shares are
computed by the group against peers measured in the same run, never against
numbers from elsewhere.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nbcache.units import format_size

# Transitional, to be removed once the restructure has landed: ``digest`` is
# public at ``nbcache.keys``; before that it lived in ``nbcache.keys.hashing``
# (mid-move) and ``nbcache.hashing`` (before the move).
try:
    from nbcache.keys import digest
except ImportError:
    try:
        from nbcache.keys.hashing import digest
    except ImportError:
        from nbcache.hashing import digest  # noqa: F401

# File systems whose files live in RAM: writing "to disk" there measures memcpy.
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs"})


@dataclass(frozen=True)
class Settings:
    """What the command line asked for."""

    size: int  # bytes of the test value
    repeat: int  # timed runs per measurement
    directory: Path  # where files go (a fresh folder the run owns)
    prefault: bool = True  # touch and free scratch memory before each timed run
    progress: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


@dataclass(frozen=True)
class Target:
    """A goal for a ratio (``>=``) or a share (``<=``)."""

    op: Literal[">=", "<="]
    threshold: float
    text: str

    def met(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


def at_least(ratio: float) -> Target:
    return Target(">=", ratio, f"≥ {ratio:.2f}×")


def at_most(share: float) -> Target:
    return Target("<=", share, f"≤ {share * 100:.0f} %")


@dataclass(frozen=True)
class Row:
    """One line of the table.

    ``times`` are the seconds of each timed run.  ``ratio`` is nbcache's speed
    divided by this row's speed (this row's time / nbcache's time, best of each):
    at least 1 means nbcache is as fast or faster.  ``share`` is a fraction of
    an nbcache time.
    """

    group: str
    name: str
    times: tuple[float, ...] = ()
    nbytes: int = 0
    ratio: float | None = None
    share: float | None = None
    target: Target | None = None
    versus: str = ""
    # How a share shows: "%" of an nbcache time, "s" (a time itself), or "×" (a multiple).
    unit: str = "%"
    status: str = ""  # shown instead of the times when there are none ("timeout after 20 s")
    # CPU seconds of each timed run (the process's own, time.process_time), where measured:
    # on a loaded machine the wall clock includes waiting for a CPU, this does not.
    cpu: tuple[float, ...] = ()

    @property
    def best_cpu(self) -> float | None:
        return min(self.cpu) if self.cpu else None

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def throughput(self) -> float | None:
        """Bytes per second of the best run."""
        best = self.best
        return self.nbytes / best if self.nbytes and best else None

    @property
    def figure(self) -> float | None:
        return self.ratio if self.ratio is not None else self.share

    @property
    def met(self) -> bool | None:
        figure = self.figure
        if self.target is None or figure is None:
            return None
        return self.target.met(figure)


@dataclass(frozen=True)
class Group:
    """A benchmark group: ``run`` measures and returns rows, ``notes`` explain them."""

    name: str
    title: str
    run: Callable[[Settings], list[Row]]
    notes: tuple[str, ...] = ()
    # Bytes of free disk and of free memory the group needs, as multiples of --size.
    disk_factor: float = 0.0
    memory_factor: float = 0.0


@dataclass
class Timing:
    """Seconds of each timed run, wall clock and the process's CPU time."""

    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)


def settle(prefault_bytes: int) -> None:
    """Make every timed run start from the same state.

    Flush dirty pages (so an earlier write's writeback does not overlap), collect
    garbage, then touch and free ``prefault_bytes`` of scratch memory.  The last
    step matters on VMs with free page reporting (virtio-balloon, Firecracker):
    memory that stays free for about 2 s goes back to the host, and the next
    process to touch it pays a host page fault per page, which makes a 1 GB
    allocation up to 10x slower.  Freeing freshly touched memory just before the
    run hands the run warm pages, whichever contender it is.
    """
    os.sync()
    gc.collect()
    if prefault_bytes > 0:
        scratch = np.ones(prefault_bytes, dtype=np.uint8)
        del scratch


@dataclass(frozen=True)
class Contender:
    """One thing to time: ``run(i)`` timed, then ``after(i, result)`` untimed.

    ``after`` checks the result and cleans up (deletes a file the next run must
    not find); the result is dropped before the next run starts.
    """

    name: str
    run: Callable[[int], Any]
    after: Callable[[int, Any], None] | None = None


def measure(
    settings: Settings,
    contenders: Sequence[Contender],
    prefault_bytes: int | None = None,
    label: str = "",
) -> dict[str, Timing]:
    """Time every contender ``settings.repeat`` times, taking turns (round-robin).

    Taking turns spreads any drift of the machine (another process starting,
    the disk's write cache filling) over all contenders instead of loading it
    onto whichever ran last.  ``prefault_bytes`` defaults to the array's size.
    """
    timings = {c.name: Timing() for c in contenders}
    scratch = settings.size + (64 << 20) if prefault_bytes is None else prefault_bytes
    for i in range(settings.repeat):
        for contender in contenders:
            settings.say(f"{label}{contender.name} ({i + 1}/{settings.repeat})")
            settle(scratch if settings.prefault else 0)
            start, start_cpu = time.perf_counter(), time.process_time()
            result = contender.run(i)
            timings[contender.name].times.append(time.perf_counter() - start)
            timings[contender.name].cpu.append(time.process_time() - start_cpu)
            if contender.after is not None:
                contender.after(i, result)
            del result
            gc.collect()
    return timings


# A fixed secret: the benchmarks never read or create the user's secret file.
BENCH_SECRET = "nbcache-benchmark-secret-not-for-real-use"


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block, then put them back."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def nbcache_environ(store: Path, **more: str | None) -> contextlib.AbstractContextManager[None]:
    """The environment a benchmark runs nbcache in, whatever the calling shell sets: the
    benchmark's secret, ``store`` as the default store, the default size limit, no tier
    and no lock server; ``more`` set (or unset) besides."""
    return environ(
        NBCACHE_SECRET=BENCH_SECRET,
        NBCACHE_DIR=str(store),
        NBCACHE_MAX_SIZE="10GB",
        NBCACHE_TIER=None,
        NBCACHE_LOCK_URL=None,
        **more,
    )


# -- describing where and on what the run happened --------------------------


def write_notebook(cells: Sequence[str], path: Path) -> None:
    """A notebook of ``cells`` for the python3 kernel, each cell with an id (``c0``...)."""
    import nbformat  # a benchmark of notebooks only

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(s, id=f"c{i}") for i, s in enumerate(cells)]
    nbformat.write(nb, os.fspath(path))


def file_system(path: Path) -> tuple[str, str]:
    """(type, mount point) of the file system holding ``path``, from /proc/mounts."""
    target = os.path.realpath(path)
    best = ("unknown", "?")
    try:
        with open("/proc/mounts") as f:
            lines = f.read().splitlines()
    except OSError:
        return best
    longest = -1
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > longest:
            longest = len(mount)
            best = (parts[2], mount)
    return best


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def meminfo(field: str) -> int | None:
    """Bytes of a /proc/meminfo field (``MemTotal``, ``MemAvailable``), or None off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _git_revision() -> str:
    """The project's commit, and whether nbcache/ differs from it ("unknown" outside git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "nbcache"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} ({'nbcache/ has uncommitted changes' if changed else 'nbcache/ as committed'})"


def compile_like_an_install() -> bool:
    """Compile nbcache's modules to bytecode, as pip does when it installs a wheel.

    An editable install writes bytecode on first import, unless ``PYTHONDONTWRITEBYTECODE``
    is set (as in some sandboxes and containers): then every kernel compiles nbcache
    from source again (about 0.1 s of CPU for ``%load_ext`` alone), while the peers'
    installed packages load from bytecode. True when the modules are now compiled.
    """
    import compileall

    import nbcache

    return bool(compileall.compile_dir(Path(nbcache.__file__).parent, quiet=1))


def environment(settings: Settings) -> list[tuple[str, str]]:
    """What a reader needs to judge the figures: machine, versions, where files went."""
    import joblib
    import xxhash

    from nbcache import _version

    fstype, mount = file_system(settings.directory)
    memory = meminfo("MemTotal")
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("machine", f"{_cpu_model()}, {os.cpu_count()} CPUs, {format_size(memory or 0)} RAM"),
        ("system", f"{platform.system()} {platform.release()}"),
        ("python", sys.version.split()[0]),
        ("commit", _git_revision()),
        (
            "versions",
            f"nbcache {_version.__version__}, numpy {np.__version__}, "
            f"joblib {joblib.__version__}, xxhash {xxhash.VERSION}",
        ),
        ("files", f"{settings.directory} ({fstype} mounted on {mount})"),
        ("value", f"{format_size(settings.size)} float64 array (np.random.rand)"),
        (
            "runs",
            f"{settings.repeat} timed runs per row, best and median shown; "
            f"prefault {'on' if settings.prefault else 'off'}",
        ),
        ("bytecode", "nbcache's modules compiled first, as an installed wheel has them"),
    ]


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far: by everything (from /proc/stat) and by this process."""

    wall: float
    busy: float  # all CPUs, not idle and not waiting for I/O
    steal: float  # taken by the hypervisor for other guests
    own: float  # this process, user + system


def cpu_sample() -> CpuSample | None:
    """Now, or None where /proc/stat is missing (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    own = os.times()
    return CpuSample(
        wall=time.monotonic(),
        busy=(user + nice + system + irq + softirq) / tick,
        steal=steal / tick,
        own=own.user + own.system,
    )


def others_load(before: CpuSample | None, after: CpuSample | None) -> tuple[float, float] | None:
    """(CPUs kept busy outside this process, CPUs stolen by the host), averaged between samples.

    "Outside this process" includes the kernel's writeback threads flushing this
    run's own files, so a benchmark that writes shows some even on a quiet machine.
    """
    if before is None or after is None or after.wall <= before.wall:
        return None
    wall = after.wall - before.wall
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / wall), max(0.0, (after.steal - before.steal) / wall)


# -- the table ---------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 1e-4:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds * 1e6:.2f} µs"


def format_rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate / 1e9:.2f} GB/s"


def format_figure(row: Row) -> str:
    if row.ratio is not None:
        # Three significant digits below 0.1, where two decimals would show 0.00×.
        text = f"{row.ratio:.3g}×" if 0 < row.ratio < 0.1 else f"{row.ratio:.2f}×"
    elif row.share is not None and row.unit == "s":
        text = format_seconds(row.share)
    elif row.share is not None and row.unit == "×":
        text = f"{row.share:.2f}×"
    elif row.share is not None:
        text = f"{row.share * 100:.1f} %"
    else:
        return ""
    return f"{text} {row.versus}" if row.versus else text


def format_met(row: Row) -> str:
    met = row.met
    return "" if met is None else ("pass" if met else "**MISS**")


COLUMNS = (
    "Group",
    "Benchmark",
    "Best",
    "Median",
    "Best CPU",
    "Throughput",
    "Figure",
    "Target",
    "Met",
)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"] * 2) + "|",
    ]
    previous = None
    for row in rows:
        cells = (
            row.group if row.group != previous else "",
            row.name,
            format_seconds(row.best) or row.status,
            format_seconds(row.median),
            format_seconds(row.best_cpu),
            format_rate(row.throughput),
            format_figure(row),
            row.target.text if row.target else "",
            format_met(row),
        )
        previous = row.group
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
