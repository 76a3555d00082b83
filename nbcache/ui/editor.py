"""The cache's state on every cell, for nbcache's JupyterLab and Notebook 7 extension.

A comm named ``nbcache`` carries two things to the editor: after each cell runs, what
nbcache did with it (restored, ran and stored, kept in memory, always runs, ran
uncached, running in the background with its progress) and why, in the words of
``%nbcache why``; and, when the editor asks (a cell was edited or ran), the plan of
running the notebook on from a cell in this kernel, so that the editor can mark the
cells that would run again as stale. The plan is :func:`nbcache.run.plan.plan`, so
the decision is the one a run takes.

The kernel never depends on it. It sends only over a comm an editor said hello on: the
one the kernel opens when nbcache loads is closed or ignored by front ends without the
extension (nbclient would even take a message with a ``state`` for a widget's), so a
headless run or another front end gets nothing but that one comm_open. Status lines and
cards show as they always do, for every front end.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

from ..run.cell import CellRunner
from ..run.decide import FORCED, MEMORY_ONLY
from ..tasks.task import Task

__all__ = ["TARGET", "Editor", "state_of"]

TARGET = "nbcache"
PROGRESS_EVERY = 0.5  # seconds between two progress messages of a background cell
# A state by the outcome ``nbcache run`` writes into ``cell.metadata["nbcache"]``.
OUTCOMES = {
    "restored": "restored",
    "ran": "ran",
    "memory": "kept in memory",
    "always": "always runs",
    "uncached": "uncached",
}
_UNTIMED = ("uncached",)  # as CellOutcome.record: a run outside the cache is not timed


def state_of(noted: dict[str, Any]) -> str:
    """The editor's state of a cell from what :class:`CellRunner` noted of its run."""
    outcome = str(noted.get("outcome", "ran"))
    if noted.get("action") == "always" or (outcome == "ran" and noted.get("always")):
        return "always"
    if outcome == "ran" and "stored" in noted and not noted["stored"]:
        return "memory"
    return outcome if outcome in OUTCOMES else "ran"


class Editor:
    """The kernel's end of the ``nbcache`` comm, for one shell."""

    def __init__(self, shell: Any, cells: CellRunner) -> None:
        self.shell = shell
        self.cells = cells
        self.comms: list[Any] = []  # those an editor listens on
        self.opened: list[Any] = []  # every comm, to close
        self.latest: dict[str, dict[str, Any]] = {}  # each cell's last state message
        self._lock = threading.Lock()

    # -- opening and closing -------------------------------------------------------

    def open(self) -> None:
        """Listen for editors that open the comm, tell any editor already there that
        nbcache is loaded, and follow every cell run. Nothing without a kernel."""
        if getattr(self.shell, "kernel", None) is None:
            return  # a terminal IPython: no front end to tell
        try:
            from comm import create_comm, get_comm_manager
        except ImportError:  # an old ipykernel without the comm package
            return
        get_comm_manager().register_target(TARGET, self._opened)
        self.follow(create_comm(target_name=TARGET, data={"type": "hello"}), heard=False)
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def close(self) -> None:
        """Undo :meth:`open`: the editors keep the states they show."""
        if getattr(self.shell, "kernel", None) is None:
            return
        from comm import get_comm_manager

        get_comm_manager().unregister_target(TARGET, self._opened)
        hooks = {"pre_run_cell": self.pre_run_cell, "post_run_cell": self.post_run_cell}
        for name, hook in hooks.items():
            try:
                self.shell.events.unregister(name, hook)
            except ValueError:
                pass  # never registered: open() found no comm package
        for comm in self.opened:
            comm.close()
        self.opened.clear()
        self.comms.clear()

    def _opened(self, comm: Any, _msg: Any) -> None:
        self.follow(comm, heard=True)  # an editor opened it: it listens

    def follow(self, comm: Any, *, heard: bool) -> None:
        """Take messages from ``comm``; send to it once an editor is ``heard`` on it."""
        self.opened.append(comm)
        comm.on_msg(lambda msg: self._received(comm, msg))
        comm.on_close(lambda _msg: self._forget(comm))
        if heard:
            self._heard(comm)

    def _heard(self, comm: Any) -> None:
        """An editor listens on ``comm``: from now on it is sent every state, and now the
        last state of each cell that ran so far (a notebook run with Run All is told of
        its comm only once the kernel has run every cell the editor had queued)."""
        with self._lock:
            if comm in self.comms:
                return
            self.comms.append(comm)
            told = list(self.latest.values())
        for data in told:
            comm.send(data)

    def _forget(self, comm: Any) -> None:
        with self._lock:
            if comm in self.comms:
                self.comms.remove(comm)
            if comm in self.opened:
                self.opened.remove(comm)

    def send(self, data: dict[str, Any]) -> None:
        """Send ``data`` to every editor listening (from any thread); a cell's state is
        kept for editors that say hello later."""
        with self._lock:
            if data.get("type") == "state":
                self.latest.pop(data["cell_id"], None)  # in the order the cells last ran
                self.latest[data["cell_id"]] = data
            comms = list(self.comms)
        for comm in comms:
            comm.send(data)

    # -- each cell run ---------------------------------------------------------------

    def pre_run_cell(self, _info: Any) -> None:
        self.cells.noted = None

    def post_run_cell(self, result: Any) -> None:
        """Tell the editors what nbcache did with the cell that just ran (nothing: it
        ran without nbcache, or raised)."""
        cell_id = getattr(getattr(result, "info", None), "cell_id", None)
        if not cell_id:
            return
        noted, self.cells.noted = self.cells.noted, None
        identity = self.cells.last
        task = self.cells.tasks.get(identity) if identity else None
        if noted is not None and not getattr(result, "error_in_exec", None):
            self.send(self.record(cell_id, state_of(noted), noted.get("seconds")))
        elif task is not None and not task.future.done() and noted is None:
            self._follow_task(cell_id, task)
        else:
            self.send({"type": "state", "cell_id": cell_id, "cell_state": None})

    def record(self, cell_id: str, state: str, seconds: Any) -> dict[str, Any]:
        """The message of a cell's state, with the record ``nbcache run`` writes."""
        reasons = list(self.cells.reasons.get(self.cells.last or "", []))
        if state == "memory":
            reasons.insert(0, MEMORY_ONLY)
        record: dict[str, Any] = {"outcome": OUTCOMES[state], "why": "; ".join(reasons)}
        if state not in _UNTIMED and isinstance(seconds, (int, float)):
            record["seconds"] = round(float(seconds), 4)
        return {"type": "state", "cell_id": cell_id, "cell_state": state, "record": record}

    def _follow_task(self, cell_id: str, task: Task[Any]) -> None:
        """A background cell: its progress now and then, its state once it ends."""
        identity = self.cells.last or ""
        last = [0.0]

        def running(message: dict[str, Any]) -> dict[str, Any]:
            done, total = task.done_steps, task.total_steps
            return {**message, "cell_state": "running", "progress": [done, total]}

        def changed(task: Task[Any]) -> None:
            if task.future.done():
                self._task_ended(cell_id, identity, task)
                return
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                self.send(running({"type": "state", "cell_id": cell_id}))

        self.send(running({"type": "state", "cell_id": cell_id}))
        task.on_change(changed)

    def _task_ended(self, cell_id: str, identity: str, task: Task[Any]) -> None:
        if task.state != "done":
            self.send({"type": "state", "cell_id": cell_id, "cell_state": None})
            return
        reasons = self.cells.reasons.get(identity, [])
        record = {"outcome": "ran", "why": "; ".join(reasons), "seconds": round(task.elapsed, 4)}
        self.send({"type": "state", "cell_id": cell_id, "cell_state": "ran", "record": record})

    # -- what the editor asks ------------------------------------------------------------

    def _received(self, comm: Any, msg: Any) -> None:
        data = msg.get("content", {}).get("data", {}) if isinstance(msg, dict) else {}
        if data.get("type") == "hello":
            self._heard(comm)
        elif data.get("type") == "plan":
            self._heard(comm)
            comm.send(self.plan(data))

    def plan(self, request: dict[str, Any]) -> dict[str, Any]:
        """The plan of running ``request["cells"]`` (``[cell id, source, number]``, in
        order) on from this kernel's namespace as it is now: each cell's decision and why.
        A plan that fails says so and marks nothing."""
        cells: list[tuple[str | None, str]] = [
            (str(c[0]), str(c[1])) for c in request.get("cells", [])
        ]
        numbers = [int(c[2]) for c in request.get("cells", [])]
        reply: dict[str, Any] = {"type": "plan", "seq": request.get("seq"), "rows": []}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a plan is not a run: nothing to warn of
                rows = self.cells.plan(cells, dict(self.shell.user_ns), numbers)
        except Exception as exc:  # noqa: BLE001 - the editor shows no stale marks then
            reply["error"] = f"{type(exc).__name__}: {exc}"
            return reply
        reply["rows"] = [
            {
                "cell_id": row.cell_id,
                # a cell run with -f runs every time: not stale, whatever changed
                "decided": "forced" if row.reasons == (FORCED,) else row.decided,
                "why": "; ".join(row.reasons),
            }
            for row in rows
        ]
        return reply
