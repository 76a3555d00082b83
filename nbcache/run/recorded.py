"""A missed cell's body run in the shell, recorded: what it showed and paged, the files
it read, the modules and the state outside the namespace it changed, and checkpoints
of its progress loops (a resumed run's earlier time counted in)."""

from __future__ import annotations

import time

from ..cache.core import Cache
from ..keys.scope import namespace_snapshot
from .cellrun import CellRun, Made
from .checkpoint import checkpointing
from .effects import Effects
from .effects import ran as effects_ran
from .files import FileReads
from .modstate import ModuleWatch
from .output import OutputLog, hides_result, shows_result
from .shell import Shell

__all__ = ["run_recorded"]


def run_recorded(shell: Shell, cache: Cache, run: CellRun, exclude: list[str]) -> Made:
    """Run ``run``'s body in the shell's namespace, recording its output and the files
    it read (those under ``exclude``, the store's, left out)."""
    __tracebackhide__ = True
    namespace = shell.user_ns
    before = namespace_snapshot(namespace)
    log = OutputLog()
    outside = Effects.now()
    modules = ModuleWatch(run.code, namespace)  # before the clock: not the body's time
    start = time.perf_counter()
    with (
        log.recording(shell.display_publisher),
        shell.paging(lambda data, start: log.add("page", data, start)),
        FileReads.recording(exclude) as read,
        modules.importing(around=outside.importing),
        checkpointing(
            cache, run, namespace, before, log, outside, shell.publish, report=shell.report
        ) as checkpoints,
    ):
        result = shell.execute(run.code.source)
        # The result shows before the figures, as IPython shows it before its
        # post-execute hooks draw them (drawing first would also change it: a text's
        # position moves once its figure is laid out).
        if shows_result(result) and not hides_result(run.code.source):
            log.add_shown("result", lambda: shell.show_result(result))
        shell.flush_figures()
    checkpoints.finished()  # its entry replaces its checkpoint
    # A resumed run took what the interrupted ones did too: that is what a hit saves.
    seconds = time.perf_counter() - start + checkpoints.earlier_seconds
    files = FileReads.of(read).merged(FileReads.of(run.options.watch))
    changes = outside.changes(Effects.now())
    effects_ran(changes)
    made = Made(namespace, before, log, result, seconds, files, outside, changes)
    made.modules = modules.changed()
    return made
