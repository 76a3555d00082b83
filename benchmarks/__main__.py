"""``python -m benchmarks``: run every benchmark group and print a Markdown report.

Run it from the project root.  The report goes to stdout (paste it into a README
as is); progress goes to stderr.  Add a group by writing a module with a
:class:`~benchmarks.common.Group` and listing it in ``GROUPS``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbcache.units import format_size, parse_size

from . import (
    background,
    cells,
    hashing_scale,
    keys_memo,
    notebook_overhead,
    on_dask,
    printing,
    restored_cells,
    resume,
    s3,
    store_io,
    store_scale,
    whole_notebook,
)
from .common import (
    MEMORY_FILE_SYSTEMS,
    Group,
    Row,
    Settings,
    compile_like_an_install,
    cpu_sample,
    environment,
    file_system,
    markdown_table,
    meminfo,
    others_load,
)

__all__ = ["GROUPS", "as_json", "main", "report", "run_groups"]

GROUPS: dict[str, Group] = {
    group.name: group
    for group in (
        store_io.GROUP,
        keys_memo.HASHING,
        keys_memo.MEMOIZE,
        cells.GROUP,
        background.GROUP,
        on_dask.GROUP,
        s3.GROUP,
        store_scale.GROUP,
        hashing_scale.GROUP,
        resume.GROUP,
        notebook_overhead.GROUP,
        whole_notebook.GROUP,
        restored_cells.GROUP,
        printing.GROUP,
    )
}


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size < 8:
        raise argparse.ArgumentTypeError(f"--size must be at least 8 bytes, got {text!r}")
    return size


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--repeat must be a whole number ≥ 1, got {text!r}")
    return value


def _counts(text: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers ≥ 1 ("100,10000,100000"; "10k" and "1M" too)."""
    counts = []
    for part in text.split(","):
        word = part.strip().lower().replace("_", "")
        scale = {"k": 1_000, "m": 1_000_000}.get(word[-1:], 1)
        try:
            value = int(word[:-1] if scale > 1 else word) * scale
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"expected whole numbers ≥ 1 separated by commas, got {text!r}"
            )
        counts.append(value)
    return tuple(sorted(set(counts)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure nbcache against its peers, all in this run, and print a "
        "Markdown report.",
    )
    parser.add_argument(
        "--size",
        type=_size,
        default=parse_size("1GB"),
        metavar="SIZE",
        help="bytes of the test array, e.g. 1GB (default), 256MB, 2GiB",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=3,
        metavar="N",
        help="timed runs per measurement; best and median are reported (default 3)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="folder for the files (a fresh subfolder is made and removed); default: the "
        "current directory, so the files land on its disk rather than a tmpfs /tmp",
    )
    parser.add_argument(
        "--only", choices=sorted(GROUPS), default=None, help="run one benchmark group"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write every run's seconds and the figures to PATH as JSON",
    )
    parser.add_argument(
        "--entries",
        type=_counts,
        default=store_scale.DEFAULT_ENTRIES,
        metavar="N,N,...",
        help="store_scale: the store sizes, in entries (default 100,10000,100000)",
    )
    parser.add_argument(
        "--objects",
        type=_counts,
        default=hashing_scale.DEFAULT_SIZES,
        metavar="N,N,...",
        help="hashing_scale: the object-graph sizes (default 1k,10k,100k,1M)",
    )
    parser.add_argument(
        "--no-prefault",
        dest="prefault",
        action="store_false",
        help="do not touch and free scratch memory before each timed run (see the notes)",
    )
    return parser


def _check_room(groups: Sequence[Group], size: int, folder: Path) -> str | None:
    """An error message if the disk is too full to run; warns about memory on stderr."""
    disk = max((g.disk_factor for g in groups), default=0.0) * size
    free = shutil.disk_usage(folder).free
    if free < disk:
        return (
            f"{folder} has {format_size(free)} free, the benchmark needs about "
            f"{format_size(disk)} at --size {format_size(size)}: free space, pass a smaller "
            "--size or another --dir"
        )
    memory = max((g.memory_factor for g in groups), default=0.0) * size
    available = meminfo("MemAvailable")
    if available is not None and available < memory:
        print(
            f"warning: {format_size(available)} of memory available, the benchmark wants "
            f"about {format_size(memory)}: figures may include swapping or page cache misses",
            file=sys.stderr,
        )
    return None


def _quiet_check(seconds: float = 0.5) -> str | None:
    """A warning if other processes use more than a fifth of a CPU right now."""
    before = cpu_sample()
    time.sleep(seconds)
    load = others_load(before, cpu_sample())
    if load is None or load[0] + load[1] < 0.2:
        return None
    return (
        f"the machine was not idle when the run started ({load[0]:.2f} CPUs busy elsewhere, "
        f"{load[1]:.2f} stolen by the host): figures may be slower and noisier than usual"
    )


def run_groups(groups: Sequence[Group], settings: Settings) -> dict[str, list[Row]]:
    """Each group's rows, in order."""
    return {group.name: group.run(settings) for group in groups}


def report(
    results: dict[str, list[Row]], settings: Settings, command: str, warnings: Sequence[str] = ()
) -> str:
    """The whole Markdown report: command, environment, one table per group, notes."""
    lines = ["# nbcache benchmarks", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in environment(settings)]
    lines += [f"- note: {text}" for text in warnings]
    for name, rows in results.items():
        group = GROUPS[name]
        lines += ["", f"## {group.name}: {group.title}", "", markdown_table(rows), ""]
        lines += [f"{i}. {note}" for i, note in enumerate(group.notes, 1)]
    return "\n".join(lines) + "\n"


def as_json(
    results: dict[str, list[Row]], settings: Settings, command: str, warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """The raw results: every run's seconds, and each row's figure, target and verdict."""
    return {
        "command": command,
        "environment": dict(environment(settings)),
        "notes": list(warnings),
        "groups": {
            name: [
                {
                    "group": row.group,
                    "name": row.name,
                    "seconds": list(row.times),
                    "cpu_seconds": list(row.cpu),
                    "nbytes": row.nbytes,
                    "ratio": row.ratio,
                    "share": row.share,
                    "target": row.target.text if row.target else None,
                    "met": row.met,
                    "status": row.status,
                }
                for row in rows
            ]
            for name, rows in results.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    groups = [GROUPS[args.only]] if args.only else list(GROUPS.values())
    parent = (args.dir if args.dir is not None else Path.cwd()).expanduser().absolute()
    parent.mkdir(parents=True, exist_ok=True)
    problem = _check_room(groups, args.size, parent)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    warnings = []
    fstype, mount = file_system(parent)
    if fstype in MEMORY_FILE_SYSTEMS:
        warnings.append(
            f"{parent} is on {fstype} ({mount}), which keeps files in memory: the write "
            "figures do not include a disk. Pass --dir on a disk-backed file system."
        )
    quiet = _quiet_check()
    if quiet is not None:
        warnings.append(quiet)
    if not compile_like_an_install():
        warnings.append("nbcache's modules could not all be compiled to bytecode")
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)
    store_scale.ENTRIES = args.entries
    hashing_scale.SIZES = args.objects
    folder = Path(tempfile.mkdtemp(prefix=".nbcache-bench-", dir=parent))
    settings = Settings(
        size=args.size,
        repeat=args.repeat,
        directory=folder,
        prefault=args.prefault,
        progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
    )
    shown = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    before = cpu_sample()
    try:
        results = run_groups(groups, settings)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load = others_load(before, cpu_sample())
    if load is not None:
        warnings.append(
            f"during the run, other processes and kernel threads kept {load[0]:.2f} CPUs busy "
            f"on average (this includes writeback of the run's own files) and the host stole "
            f"{load[1]:.2f} CPUs"
        )
    print(report(results, settings, shown.strip(), warnings), end="")
    if args.json is not None:
        data = as_json(results, settings, shown.strip(), warnings)
        args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
