"""nbcache from a shell: manage the store (list, info, clear, prune, check), run notebooks
headless from the cache (run, run --plan), install the kernel that caches every cell
(kernel install), and see it work (demo, tutorial).

The store is the one the notebook uses: NBCACHE_DIR (default .nbcache here).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .cache.core import Cache
from .cache.default import default_cache
from .errors import CacheError, CacheWarning
from .settings import max_size, store_location, unusable_settings
from .ui.listing import entries_table, matching_keys, plural, summary_lines
from .units import parse_duration, parse_size

__all__ = ["main"]


def cmd_list(cache: Cache, _args: argparse.Namespace) -> int:
    records = cache.ledger.records()
    if not records:
        print(f"no entries in {store_location()}")
        return 0
    print("\n".join(entries_table(records)))
    return 0


def cmd_info(cache: Cache, _args: argparse.Namespace) -> int:
    print("\n".join(summary_lines(cache)))
    return 0


def cmd_clear(cache: Cache, args: argparse.Namespace) -> int:
    if args.all:
        print(f"removed {cache.clear()} entries from {store_location()}")
        return 0
    keys = matching_keys(cache, args.target)
    if not keys:
        print(f"no entry matches {args.target!r}: see `python -m nbcache list`", file=sys.stderr)
        return 1
    for key in keys:
        cache.remove(key)
    print(f"removed {plural(len(keys))}")
    return 0


def cmd_prune(cache: Cache, args: argparse.Namespace) -> int:
    if args.max_size is None and args.older_than is None:
        limit = max_size()
    else:
        limit = parse_size(args.max_size) if args.max_size else None
    older = parse_duration(args.older_than) if args.older_than else None
    removed = cache.ledger.prune(max_size=limit, older_than=older)
    print(f"removed {plural(len(removed))}")
    return 0


def cmd_check(cache: Cache, _args: argparse.Namespace) -> int:
    assert cache.store is not None  # main() answered a memory-only cache already
    print(f"indexed {plural(cache.store.reindex())} in {cache.store.location}")
    return 0


def cmd_demo(_cache: Cache | None, args: argparse.Namespace) -> int:
    from .ui.demo import run_demo, run_demo_child

    return run_demo_child(args.limit) if args.child else run_demo(args.limit)


def cmd_tutorial(_cache: Cache | None, args: argparse.Namespace) -> int:
    from .notebooks.tutorial import run_tutorial

    return run_tutorial(args.path, out=args.out)


def cmd_run(_cache: Cache | None, args: argparse.Namespace) -> int:
    from .notebooks.params import resolve

    if not os.path.isfile(args.notebook):
        print(f"nbcache: no notebook at {args.notebook}", file=sys.stderr)
        return 2
    parameters = {name: resolve(value) for name, value in args.parameter or []}
    parameters.update({name: value for name, value in args.raw_parameter or []})
    if args.plan:
        from .notebooks.plan import plan_notebook

        rows = plan_notebook(
            args.notebook, store=args.store, kernel=args.kernel, parameters=parameters
        )
        print("\n".join(rows.lines()))
        return 0
    from .notebooks.runner import run_notebook

    _, summary = run_notebook(
        args.notebook,
        out=args.output or args.notebook,
        store=args.store,
        timeout=args.timeout,
        kernel=args.kernel,
        parameters=parameters,
    )
    for line in summary.warning_lines():
        print(line, file=sys.stderr)
    if args.verbose:
        for line in summary.verbose_lines():
            print(f"nbcache run: {line}")
    print(summary.line(), file=sys.stderr if summary.error else sys.stdout)
    return 1 if summary.error else 0


def cmd_run_each(cache: Cache | None, args: argparse.Namespace) -> int:
    """``nbcache run A.ipynb B.ipynb``: each in turn, as pre-commit passes every file it
    matched; every notebook runs even after one fails, and the worst status is returned."""
    if len(args.notebook) > 1 and args.output:
        print("nbcache: -o names one executed notebook; run one notebook with it", file=sys.stderr)
        return 2
    if (args.parameter or args.raw_parameter) and not args.output and not args.plan:
        # the parameters cell would be written into the notebook the user edits
        print(
            "nbcache: -p and -r leave the notebook as it is: name the executed copy with "
            "-o, e.g. -o out.ipynb",
            file=sys.stderr,
        )
        return 2
    from .notebooks.inplace import keep_if_unchanged, read_bytes

    status = 0
    for path in args.notebook:
        if len(args.notebook) > 1:
            print(path)
        before = None if args.plan or args.output else read_bytes(path)
        status = max(status, cmd_run(cache, argparse.Namespace(**{**vars(args), "notebook": path})))
        if before is not None:
            keep_if_unchanged(path, before)  # a re-run that restored all leaves no diff
    return status


def cmd_kernel(_cache: Cache | None, args: argparse.Namespace) -> int:
    from .notebooks.kernelspec import install

    prefix = sys.prefix if args.sys_prefix else args.prefix
    dest = install(name=args.name, display_name=args.display_name, user=args.user, prefix=prefix)
    print(f"installed the kernelspec {args.name!r} in {dest}")
    return 0


def _program() -> str:
    """The command as the user typed it: ``nbcache`` (the script) or ``python -m nbcache``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m nbcache" if name in ("", "__main__.py", "-c") else name


def _target(text: str) -> str:
    """A clear or pin target: never empty (an empty prefix matches every key)."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError(
            "an empty name or key matches every entry; give a name or key prefix, or --all"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program(),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_store_commands(sub)
    _add_demo_commands(sub)
    _add_run(sub)
    _add_kernel(sub)
    return parser


def _add_store_commands(sub: Any) -> None:
    """``list``, ``info``, ``clear``, ``prune`` and ``check``: the store and its entries."""
    sub.add_parser("list", help="list stored entries").set_defaults(run=cmd_list)
    sub.add_parser("info", help="where the store is and what it holds").set_defaults(run=cmd_info)
    clear = sub.add_parser("clear", help="remove entries (a key prefix or label, or --all)")
    target = clear.add_mutually_exclusive_group(required=True)
    target.add_argument("target", nargs="?", type=_target, help="a key prefix or an entry's label")
    target.add_argument("--all", action="store_true", help="remove every entry")
    clear.set_defaults(run=cmd_clear)
    prune = sub.add_parser("prune", help="remove old or low-value entries")
    prune.add_argument("--max-size", help="shrink the store to this size, e.g. 5GB")
    prune.add_argument("--older-than", help="remove entries unused for this long, e.g. 30d")
    prune.set_defaults(run=cmd_prune)
    sub.add_parser("check", help="rebuild the store's index from its entry files").set_defaults(
        run=cmd_check
    )


def _add_demo_commands(sub: Any) -> None:
    """``demo`` and ``tutorial``: nbcache shown at work."""
    demo = sub.add_parser("demo", help="compute in one process, restore in a second")
    demo.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    demo.add_argument("--limit", type=int, default=20_000_000, help=argparse.SUPPRESS)
    demo.set_defaults(run=cmd_demo)
    tutorial = sub.add_parser(
        "tutorial", help="run a notebook twice headless, each in a fresh kernel: compute, restore"
    )
    tutorial.add_argument(
        "path", nargs="?", help="the notebook (default: notebooks/quickstart.ipynb here)"
    )
    tutorial.add_argument("--out", metavar="PATH", help="save the notebook as run 2 left it")
    tutorial.set_defaults(run=cmd_tutorial)


def _add_run(sub: Any) -> None:
    """``run``: notebooks headless, cell by cell from the cache."""
    run = sub.add_parser(
        "run",
        help="run a notebook headless, cell by cell from the cache: only changed cells execute",
    )
    run.add_argument("notebook", nargs="+", help="the .ipynb to run (several run in turn)")
    run.add_argument(
        "-o",
        "--output",
        help="where to write the executed notebook (default: in place; needed with -p, -r)",
    )
    run.add_argument(
        "--store", help="the store (a folder or URL; default: NBCACHE_DIR or .nbcache)"
    )
    run.add_argument("--timeout", type=int, help="seconds a cell may run (default: no limit)")
    run.add_argument("--kernel", help="the kernel to run in (default: this Python's)")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter, as papermill does (numbers, True/False/None, or text)",
    )
    run.add_argument(
        "-r",
        "--raw-parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter to the text VALUE",
    )
    # argparse reads a value that starts with "-" as an option unless it looks like a
    # number; -p x -inf, -1e400 and -nan are numbers too, as papermill reads them.
    run._negative_number_matcher = re.compile(
        r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE
    )
    run.add_argument(
        "--plan",
        action="store_true",
        help="say what a run would do for each cell, and why, without running any",
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="name each cell that executed (ran, always runs, ...) and why, one line each",
    )
    run.set_defaults(run=cmd_run_each)


def _add_kernel(sub: Any) -> None:
    """``kernel install``: the nbcache kernelspec."""
    kernel = sub.add_parser("kernel", help="the nbcache kernel, for tools that run notebooks")
    kernel_sub = kernel.add_subparsers(dest="kernel_command", required=True)
    install = kernel_sub.add_parser(
        "install", help="install a kernelspec that caches every cell (NBCACHE_AUTO=1)"
    )
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user only")
    where.add_argument("--sys-prefix", action="store_true", help="in this environment (sys.prefix)")
    where.add_argument("--prefix", help="under PREFIX/share/jupyter/kernels")
    install.add_argument("--name", default="nbcache", help="the kernel's name (default: nbcache)")
    install.add_argument(
        "--display-name", default="Python 3 (nbcache)", help="the name a notebook UI shows"
    )
    install.set_defaults(run=cmd_kernel)


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """nbcache's warnings as the one line they are, without a file name and source line."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, CacheWarning):
            print(str(message), file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _one_line_warnings():
        try:
            cache = (
                None if args.command in ("demo", "tutorial", "run", "kernel") else default_cache()
            )
            if cache is not None and (cache.store is None or unusable_settings()):
                return 1  # a setting or the store cannot be used: its one line said why
            return int(args.run(cache, args))
        except (CacheError, ValueError) as exc:
            print(f"nbcache: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a folder that changed under us: still one line
            print(
                f"nbcache: {exc.strerror or exc}: {exc.filename or store_location()}",
                file=sys.stderr,
            )
            return 2


if __name__ == "__main__":
    sys.exit(main())
