"""The IPython magics: ``%%cache``, ``%memoize``, ``%%memoize`` and ``%nbcache``.

Each magic parses its line, calls the core and formats what comes back.
"""

from __future__ import annotations

import argparse
import os
import shlex
import types
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..cache.core import Cache
from ..cache.default import check_store, default_cache, open_store, set_default_cache
from ..errors import CacheError, ExecutorError
from ..run.auto import AutoMode
from ..run.cell import CellRunner
from ..run.cellrun import CellOptions
from ..run.memo import Memoized, memoize
from ..run.snapshots import parse_policy
from ..settings import max_size
from ..units import format_duration, parse_duration, parse_size
from .automode import auto_off, auto_on
from .ipython import IPythonShell
from .listing import entries_table, matching_keys, plural, summary_lines
from .widgets import browse

__all__ = ["NbcacheMagics"]


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _checkpoint(text: str) -> str | float:
    try:
        return parse_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _watched(text: str) -> str:
    """A ``--watch`` path: it must be there, or a typo would key the cell on nothing."""
    path = os.path.expanduser(text)
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(
            f"{text}: no such file or folder in {os.getcwd()}; give a path that exists"
        )
    return path


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


@magics_class
class NbcacheMagics(Magics):
    """nbcache's magics; one instance per shell."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.adapter = IPythonShell(shell)
        self.cells = CellRunner(self.adapter, default_cache)

    # -- %%cache ----------------------------------------------------------------------

    # The usage line IPython writes puts one % before the name: a cell magic needs two.
    @magic_arguments(name="%cache")
    @argument("-n", "--name", help="label the entry, for listings and `%%nbcache why NAME`")
    @argument("-f", "--force", action="store_true", help="run and overwrite the entry")
    @argument("--no-store", action="store_true", help="keep the entry in memory only")
    @argument("--max-age", type=_duration, help="older entries count as a miss (90s, 7d)")
    @argument("--ignore", nargs="+", default=[], metavar="VAR", help="inputs left out of the key")
    @argument(
        "--watch",
        nargs="+",
        default=[],
        type=_watched,
        metavar="PATH",
        help="files or folders the cell depends on (they must exist)",
    )
    @argument("--pin", action="store_true", help="keep the entry out of eviction")
    @argument("-q", "--quiet", action="store_true", help="no status line")
    @argument(
        "-b",
        "--background",
        action="store_true",
        help="run in the background (see --executor) and return at once; a card shows "
        "progress and output",
    )
    @argument(
        "--executor",
        choices=["thread", "process", "dask"],
        default=None,
        help="where a background cell runs: a thread, a worker process (loky), or a dask "
        "cluster (NBCACHE_DASK or nbcache.configure); default: nbcache.configure's choice",
    )
    @argument(
        "--checkpoint",
        type=_checkpoint,
        default="auto",
        metavar="WHEN",
        help="checkpoints of a progress loop, so a killed or failed run resumes: auto "
        "(cost-aware, the default), off, or how often (10m)",
    )
    @argument("--auto", action="store_true", help=argparse.SUPPRESS)
    @cell_magic
    def cache(self, line: str, cell: str) -> Any:
        """Run the cell once; later runs with the same code and inputs restore its result.

        The key is the cell's code (comments and layout do not count), the
        content of every variable it reads, the code of the notebook functions
        it uses, and the files it reads. A hit puts the cell's variables back,
        replays its output and shows its result; a miss runs it as usual and
        stores all that, in memory and in the store (.nbcache/ or NBCACHE_DIR).
        """
        __tracebackhide__ = True
        args = parse_argstring(self.cache, line)
        options = CellOptions(
            name=args.name,
            force=args.force,
            store=not args.no_store,
            max_age=args.max_age,
            ignore=tuple(args.ignore),
            watch=tuple(args.watch),
            pin=args.pin,
            # auto mode keeps the notebook as it is without nbcache: no status lines
            quiet=args.quiet or args.auto,
            auto=args.auto,
            background=args.background or args.executor not in (None, "thread"),
            executor=args.executor,
            checkpoint=args.checkpoint,
        )
        try:
            self.cells.run(cell, options)
        except ExecutorError as exc:  # not installed, not configured: one line says what to do
            raise UsageError(str(exc)) from exc
        # The cell has shown its result already, in its place among its outputs (a
        # background cell has none); returning it would show it twice.
        return None

    @cell_magic
    def nocache(self, line: str, cell: str) -> Any:
        """Run the cell as without nbcache (in auto mode, a cell that must always run)."""
        __tracebackhide__ = True
        if line.strip():
            raise UsageError("%%nocache takes no options")
        self.cells.run_uncached(cell)
        return None

    # -- %memoize and %%memoize -------------------------------------------------------

    @magic_arguments()
    @argument("names", nargs="*", help="functions already defined in the notebook")
    @argument("--maxsize", type=int, default=128, help="live results kept in memory")
    @argument("--no-store", action="store_true", help="keep results in memory only")
    @line_cell_magic
    def memoize(self, line: str, cell: str | None = None) -> None:
        """Memoize notebook functions: `%memoize f g` rebinds f and g; `%%memoize`
        memoizes every function the cell defines. Same as the @memoize decorator."""
        __tracebackhide__ = True
        args = parse_argstring(self.memoize, line)
        namespace = self.adapter.user_ns
        if cell is None:
            if not args.names:
                raise UsageError("%memoize needs the names of functions, e.g. %memoize f g")
            targets = args.names
        else:
            if args.names:
                raise UsageError("%%memoize takes no names: it memoizes what the cell defines")
            before = {k: id(v) for k, v in namespace.items()}
            self.adapter.execute(self.adapter.transform(cell))
            targets = [
                k for k, v in namespace.items() if before.get(k) != id(v) and _is_function(v)
            ]
        for name in targets:
            namespace[name] = self._wrap(name, namespace.get(name), args)

    def _wrap(self, name: str, value: Any, args: argparse.Namespace) -> Memoized[Any, Any]:
        if isinstance(value, Memoized):
            value = value.__wrapped__
        if not _is_function(value):
            raise UsageError(f"`{name}` is not a function defined in this session")
        return memoize(maxsize=args.maxsize, store=not args.no_store)(value)

    # -- %nbcache ---------------------------------------------------------------------

    @line_magic
    def nbcache(self, line: str) -> None:
        """Manage the cache.

        %nbcache                      the cache browser (a table with Delete and Prune)
        %nbcache info                 where the store is and what it holds
        %nbcache list                 its entries
        %nbcache why [NAME]           why a cell (default: the last; NAME: its -n name or
                                      first code line) or function restored or ran
        %nbcache clear NAME|KEY|--all remove entries (a bare `clear` removes nothing)
        %nbcache pin NAME|KEY         keep an entry out of eviction
        %nbcache prune [--max-size 5GB] [--older-than 30d]
        %nbcache dir [PATH]           show or change the store folder
        %nbcache auto [on|off]        cache every cell as with %%cache (%%nocache: not this one)
        %nbcache plan                 restore or run, and why, for the cells run so far
        %nbcache tasks                background cells and their states
        %nbcache wait [NAME]          block until a background cell (default: all) ends
        """
        command, _, rest = line.strip().partition(" ")
        if command == "why":  # its name may be a line of code: taken as typed, not split
            print(self._why(_unquoted(rest.strip())))
            return
        args = _parse(line)
        if args.command is None:
            browse(default_cache(), widgets=self.adapter.widgets)
            return
        command = args.command
        output = getattr(self, f"_cmd_{command}")(args)
        if output:
            print(output)

    def _cmd_info(self, _args: argparse.Namespace) -> str:
        return "\n".join(summary_lines(default_cache()))

    def _cmd_list(self, _args: argparse.Namespace) -> str:
        records = default_cache().ledger.records()
        return "\n".join(entries_table(records)) if records else "nbcache: no stored entries"

    def _why(self, target: str | None) -> str:
        function = self.adapter.user_ns.get(target) if target else None
        reasons = function.why() if isinstance(function, Memoized) else self.cells.why(target)
        return "\n".join(f"- {reason}" for reason in reasons)

    def _cmd_clear(self, args: argparse.Namespace) -> str:
        cache = default_cache()
        if args.all:
            return f"nbcache: removed {cache.clear()} entries"
        if not (args.target or "").strip():  # an empty prefix matches every key
            raise UsageError("%nbcache clear needs a name or key prefix (or --all), not ''")
        keys = matching_keys(cache, args.target.strip())
        for key in keys:
            cache.remove(key)
        if not keys:
            raise UsageError(f"no entry matches {args.target!r}: see %nbcache list")
        return f"nbcache: removed {plural(len(keys))}"

    def _cmd_pin(self, args: argparse.Namespace) -> str:
        cache = default_cache()
        keys = matching_keys(cache, args.target)
        if not keys:
            raise UsageError(f"no entry matches {args.target!r}: see %nbcache list")
        for key in keys:
            cache.ledger.pin(key)
        return f"nbcache: pinned {plural(len(keys))}"

    def _cmd_prune(self, args: argparse.Namespace) -> str:
        limit = args.max_size if args.max_size is not None else None
        if args.max_size is None and args.older_than is None:
            limit = max_size()
        removed = default_cache().ledger.prune(max_size=limit, older_than=args.older_than)
        return f"nbcache: removed {plural(len(removed))}"

    def _cmd_tasks(self, _args: argparse.Namespace) -> str:
        tasks = self.cells.tasks
        if not tasks:
            return "nbcache: no background cells in this session"
        lines = [f"{'state':<10} {'elapsed':>10}  {'progress':>10}  name"]
        for task in tasks.values():
            steps = f"{task.done_steps}/{task.total_steps}" if task.total_steps else ""
            lines.append(
                f"{task.state:<10} {format_duration(task.elapsed):>10}  {steps:>10}  {task.name}"
            )
        return "\n".join(lines)

    def _cmd_wait(self, args: argparse.Namespace) -> str:
        waited = self.cells.wait(args.name)
        if args.name and not waited:
            raise UsageError(f"no background cell named {args.name!r}: see %nbcache tasks")
        return ""

    def _cmd_auto(self, args: argparse.Namespace) -> str:
        if args.state == "off":
            auto_off(self.shell, self.cells)
            return "nbcache: auto mode off: only %%cache cells are cached"
        auto = AutoMode(lazy=args.lazy, min_seconds=args.min_seconds)
        auto_on(self.shell, self.cells, auto)
        rule = (
            f"cells that ran at least {format_duration(auto.min_seconds)} are stored"
            if auto.min_seconds is not None
            else "cells cheaper to run than to store are kept in memory only"
        )
        return f"nbcache: auto mode on: every cell is cached as with %%cache; {rule}"

    def _cmd_plan(self, args: argparse.Namespace) -> str:
        if self.cells.auto is None or not self.cells.auto.cells:
            return "nbcache: no cell has run in auto mode yet: `%nbcache auto` first"
        # What IPython put in the namespace when it started, as a fresh kernel has it.
        hidden = getattr(self.shell, "user_ns_hidden", {})
        initial = {k: v for k, v in self.adapter.user_ns.items() if k in hidden}
        return "\n".join(row.line() for row in self.cells.plan(None, initial))

    def _cmd_dir(self, args: argparse.Namespace) -> str:
        if args.path:
            try:
                store = open_store(args.path)
                check_store(store)
            except CacheError as exc:
                raise UsageError(str(exc)) from exc
            set_default_cache(Cache(store, max_size=max_size()))
        cache = default_cache()
        return f"nbcache: store {cache.store.location if cache.store else 'memory only'}"


def _unquoted(text: str) -> str | None:
    """``why "my name"`` as ``why my name``; an empty name is none (the last cell)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text or None


def _is_function(value: Any) -> bool:
    return isinstance(value, types.FunctionType)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"{message}\n{self.format_usage()}")


def _parse(line: str) -> argparse.Namespace:
    parser = _Parser(prog="%nbcache", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("info")
    sub.add_parser("list")
    sub.add_parser("why")  # parsed by NbcacheMagics.nbcache: its name may be code
    clear = sub.add_parser("clear")
    target = clear.add_mutually_exclusive_group(required=True)
    target.add_argument("target", nargs="?")
    target.add_argument("--all", action="store_true")
    pin = sub.add_parser("pin")
    pin.add_argument("target")
    prune = sub.add_parser("prune")
    prune.add_argument("--max-size", type=_size)
    prune.add_argument("--older-than", type=_duration)
    folder = sub.add_parser("dir")
    folder.add_argument("path", nargs="?")
    auto = sub.add_parser("auto")
    auto.add_argument("state", nargs="?", choices=["on", "off"], default="on")
    auto.add_argument("--lazy", action="store_true")
    auto.add_argument("--min-seconds", type=float, default=None)
    sub.add_parser("plan")
    sub.add_parser("tasks")
    wait = sub.add_parser("wait")
    wait.add_argument("name", nargs="?")
    try:
        words = shlex.split(line)
    except ValueError as exc:  # `why print("it's")`: a quote left open
        raise UsageError(f"%nbcache {line}: {exc}; put the name in quotes") from exc
    return parser.parse_args(words)
