"""``nbcache run``'s client (and papermill's engine's): consecutive cells that restore,
in one kernel request.

A request per cell costs a round trip to the kernel (the request, its status and
output messages, its reply), which for a restored cell is most of what it costs. So
where a cell may restore (the first cell, or one after a cell that restored), the
client sends the cells from there to the end in one request; the kernel restores
them in order, each exactly as a request of its own would (see
:mod:`nbcache.notebooks.batchside`), and stops at the first that would not restore,
unrun. The client writes each restored cell's messages into it as nbclient writes a
cell's (its outputs, its prompt number, its timing), then executes the cell the
batch stopped at, and those after it, in requests of their own until one restores
again. ``NBCACHE_RUN_BATCHES=0`` sends every cell in a request of its own.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from .. import settings

__all__ = ["batching", "with_batches"]

# A batch runs no body: restores only, each well under a second.
_SECONDS_PER_CELL = 60
_RESTORES_NEXT = ("restored", "uncached")


def batching(base: type[Any], env: Mapping[str, str], wanted: bool) -> type[Any]:
    """``base`` batching restored cells when ``wanted``, the kernel runs in auto mode with
    a cell log (``env``) and ``NBCACHE_RUN_BATCHES`` is not off; else ``base``."""
    log = env.get("NBCACHE_AUTO_LOG") if env.get("NBCACHE_AUTO") else None
    if not wanted or not log or not settings.run_batches():
        return base
    return with_batches(base, log)


def with_batches(base: type[Any], log: str) -> type[Any]:
    """A subclass of the nbclient client ``base`` (one that sends cell ids) that restores
    runs of cells in one request each; ``log`` is the kernel's cell log, where it reads
    whether a cell it executed restored."""
    # nbclient binds its blocking execute_cell to its own coroutine when the class is
    # made; papermill calls that one, so bind it to the batching coroutine again.
    run_sync: Any = importlib.import_module("nbclient.util").run_sync  # untyped
    blocking = run_sync(Batches.async_execute_cell)
    return type("BatchClient", (Batches, base), {"cell_log": log, "execute_cell": blocking})


class Batches:
    """What :func:`with_batches` adds to an nbclient client (its attributes are nbclient's)."""

    cell_log: str  # the kernel's cell log (``log`` is nbclient's logger)
    nb: Any
    kc: Any
    timeout: Any
    record_timing: bool
    skip_cells_with_tag: str
    code_cells_executed: int
    clear_before_next_output: bool
    current_id: str | None
    process_message: Any
    async_wait_for_reply: Any
    _check_raise_for_error: Any

    async def async_execute_cell(
        self,
        cell: Any,
        cell_index: int,
        execution_count: int | None = None,
        store_history: bool = True,
    ) -> Any:
        state = self.__dict__.setdefault("batched", _State())
        if cell_index in state.written:
            return cell
        if state.trying and not state.off and self._batchable(cell):
            await self._batch(cell_index, state)
            if cell_index in state.written:
                return cell
        before = state.before.pop(cell_index, [])
        parent: Any = super()  # nbclient's client, untyped
        try:
            out = await parent.async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            if before:  # published by its decision, taken in the batch it ended
                cell.outputs[:0] = before
        if self._batchable(cell):  # a cell not sent (Markdown) says nothing of the next
            state.trying = self._restored(cell, state)
        return out

    def _batchable(self, cell: Any) -> bool:
        tags = cell.get("metadata", {}).get("tags", [])
        return (
            cell.cell_type == "code"
            and bool(cell.source.strip())
            and self.skip_cells_with_tag not in tags
            and "raises-exception" not in tags
        )

    async def _batch(self, start: int, state: _State) -> None:
        cells = []
        for index in range(start, len(self.nb.cells)):
            cell = self.nb.cells[index]
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if not self._batchable(cell):
                break
            cells.append({"index": index, "id": cell.get("id"), "source": cell.source})
        if len(cells) < 2:
            state.trying = False  # one cell: its own request costs the same
            return
        with tempfile.TemporaryDirectory(prefix="nbcache-batch-") as scratch:
            given, out = os.path.join(scratch, "in.json"), os.path.join(scratch, "out.json")
            with open(given, "w", encoding="utf-8") as f:
                json.dump(cells, f)
            call = (
                "__import__('nbcache.notebooks.batchside').notebooks.batchside"
                f".restore({given!r}, {out!r})"
            )
            self.current_id = None
            msg_id = self.kc.execute(
                "", silent=True, store_history=False, user_expressions={"nbcache": call}
            )
            reply = await self._wait(msg_id, len(cells))
            said = _read(out) if reply is not None else None
        if said is None or said.get("off"):
            state.off = True  # no batch here: every cell in a request of its own
            return
        for done in said["cells"]:
            await self._write(done, msg_id, state)
        stopped = said.get("stopped")
        if stopped:
            state.before[int(stopped["index"])] = self._outputs(stopped, msg_id)

    async def _wait(self, msg_id: str, cells: int) -> Any:
        client: Any = self  # nbclient's traits are untyped
        timeout = client.timeout
        client.timeout = None if timeout is None else max(timeout, cells * _SECONDS_PER_CELL)
        try:
            return await self.async_wait_for_reply(msg_id)
        finally:
            client.timeout = timeout

    def _outputs(self, done: dict[str, Any], msg_id: str) -> list[Any]:
        """Outputs the messages of ``done`` make, as nbclient makes them (the cell's
        ``outputs`` list is where they go)."""
        cell = self.nb.cells[int(done["index"])]
        kept, cell.outputs = cell.outputs, []
        for kind, content, at in done["messages"]:
            self.process_message(_message(kind, content, at, msg_id), cell, done["index"])
        made, cell.outputs = cell.outputs, kept
        return list(made)

    async def _write(self, done: dict[str, Any], msg_id: str, state: _State) -> None:
        index = int(done["index"])
        cell = self.nb.cells[index]
        started, ended = done["times"]
        if self.record_timing:
            cell["metadata"]["execution"] = {"iopub.status.busy": _stamp(started)}
        self.code_cells_executed += 1
        self.clear_before_next_output = False
        cell.outputs = []
        source = {"code": cell.source, "execution_count": done["execution_count"]}
        self.process_message(_message("execute_input", source, started, msg_id), cell, index)
        cell.outputs = self._outputs(done, msg_id)
        cell["execution_count"] = self.code_cells_executed  # as nbclient numbers it
        if self.record_timing:
            timing = cell["metadata"]["execution"]
            timing["shell.execute_reply"] = timing["iopub.status.idle"] = _stamp(ended)
        self.nb.cells[index] = cell
        state.written.add(index)
        if done.get("failed"):  # as its reply would have said: the run stops here
            errors = [c for kind, c, _ in done["messages"] if kind == "error"]
            said = errors[-1] if errors else {"ename": "Error", "evalue": "", "traceback": []}
            await self._check_raise_for_error(cell, index, {"content": {**said, "status": "error"}})

    def _restored(self, cell: Any, state: _State) -> bool:
        """Whether the cell after the one just executed may restore, by what that one
        did (the kernel's cell log): it restored, or it runs every time."""
        try:
            with open(self.cell_log, encoding="utf-8") as f:
                f.seek(state.offset)
                lines = f.readlines()
                state.offset = f.tell()
        except OSError:
            return False
        record: dict[str, Any] = {}
        for line in lines:
            try:
                said = json.loads(line)
            except ValueError:
                continue
            if said.get("cell_id") == cell.get("id") and "outcome" in said:
                record = said
        # after a cell that ran and was stored, the cells that read what it made run too
        return record.get("outcome") in _RESTORES_NEXT or bool(record.get("always"))


class _State:
    """One run's batches: the cells written, whether to try the next, outputs a cell's
    decision published in the batch it ended."""

    def __init__(self) -> None:
        self.written: set[int] = set()
        self.trying = True
        self.off = False
        self.before: dict[int, list[Any]] = {}
        self.offset = 0


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            said = json.load(f)
    except (OSError, ValueError):
        return None
    return said if isinstance(said, dict) else None


def _when(at: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc)


def _stamp(at: float) -> str:
    return _when(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _message(kind: str, content: Any, at: float, parent: str) -> dict[str, Any]:
    """A kernel message as nbclient reads one from the kernel."""
    header = {"msg_type": kind, "date": _when(at), "msg_id": ""}
    return {
        "msg_type": kind,
        "header": header,
        "parent_header": {"msg_id": parent},
        "content": content,
        "metadata": {},
    }
