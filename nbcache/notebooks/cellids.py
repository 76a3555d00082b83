"""Sending each cell's id with its execute request, as JupyterLab does: nbclient sends
none, and the kernel names cells by id (``%nbcache why``, the plan, the run's log).

The same client waits on the kernel's shell and IOPub channels in slices: a wait on an
asyncio ZeroMQ socket can miss the wake-up for a message that is already there, and
then lasts until its timeout (nbclient's cell timeout: none by default, so for ever).
Seen after cells showing ``ipywidgets.interact``, whose Output widget nbclient answers
with messages sent on the shell socket while it waits for the reply there (nbclient
alone stalls the same way). A wait begun again looks at the socket first, so a missed
wake-up costs one slice.

Its wait for a started kernel ends once the kernel answered and IOPub is connected:
jupyter_client's then reads IOPub until it stays silent for 0.2 s, a pause every run
paid before its first cell. What that drops (the status messages of its own
``kernel_info`` requests) belongs to no cell, and nbclient passes over any message
whose parent is not the request it waits on.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import time
from collections.abc import Awaitable, Callable
from queue import Empty
from typing import Any

from ..errors import CacheError

__all__ = [
    "KernelNotReady",
    "bounded_waits",
    "forget_exit_hook",
    "ready_at_once",
    "with_cell_ids",
    "with_ids",
]

# The longest a channel wait lasts before it looks at the socket again (seconds).
WAIT_SLICE = 1.0
# How long a wait for the kernel's answer, and then for IOPub's first message, lasts
# before it asks again (jupyter_client's own).
ANSWER_WAIT, IOPUB_WAIT = 1.0, 0.2


class KernelNotReady(CacheError, RuntimeError):
    """The kernel died, or did not answer in time, before its first cell (a
    ``RuntimeError`` as jupyter_client's own, which nbclient's callers catch)."""

    def __init__(self, message: str, *, died: bool = False) -> None:
        super().__init__(message)
        self.died = died


def ready_at_once(factory: type[Any]) -> type[Any]:
    """A subclass of the kernel client class ``factory`` whose wait for a started kernel
    (``wait_for_ready``) ends when the kernel answered ``kernel_info`` and IOPub gave a
    message, without jupyter_client's wait for IOPub to fall silent after."""
    manager_class: Any = importlib.import_module("jupyter_client.manager").KernelManager

    class ReadyAtOnce(factory):  # type: ignore[misc]  # jupyter_client is untyped
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            if not isinstance(self.parent, manager_class):
                # not started by a manager: jupyter_client's own wait checks heartbeats
                return await super().wait_for_ready(timeout)  # type: ignore[no-any-return]
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                self.kernel_info()
                try:
                    reply = await _awaited(self.shell_channel.get_msg(timeout=ANSWER_WAIT))
                except Empty:
                    reply = None
                if reply is not None and reply["msg_type"] == "kernel_info_reply":
                    try:
                        await _awaited(self.iopub_channel.get_msg(timeout=IOPUB_WAIT))
                    except Empty:
                        pass  # IOPub not connected yet: ask again
                    else:
                        self._handle_kernel_info_reply(reply)
                        return None
                if not await self._async_is_alive():
                    raise KernelNotReady(
                        "the kernel died before it answered; its log above says why",
                        died=True,
                    )
                if deadline is not None and time.monotonic() > deadline:
                    raise KernelNotReady(
                        f"the kernel did not answer in {timeout:g} s; give it longer "
                        "(nbclient's startup_timeout)"
                    )

    return ReadyAtOnce


async def _awaited(value: Any) -> Any:
    """A channel's answer, whether its client is asynchronous or blocking."""
    return await value if inspect.isawaitable(value) else value


def bounded_waits(kc: Any) -> None:
    """Make the shell and IOPub channels of the kernel client ``kc`` wait in slices of
    at most :data:`WAIT_SLICE`, each ending as the whole wait would (a message, or
    ``queue.Empty`` once the caller's timeout has passed)."""
    for channel in (kc.shell_channel, kc.iopub_channel):
        channel.get_msg = _sliced(channel.get_msg)


def _sliced(get_msg: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def sliced(timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE if deadline is None else deadline - time.monotonic()
            try:
                return await get_msg(timeout=max(0.0, min(WAIT_SLICE, left)))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return sliced


def with_cell_ids(base: type[Any]) -> type[Any]:
    """A subclass of the nbclient client ``base`` that sends each cell's id with its
    execute request, as JupyterLab does (nbclient sends none), so the kernel can name
    the cell."""

    run_sync: Any = importlib.import_module("nbclient.util").run_sync  # untyped

    class CellIdClient(base):  # type: ignore[misc]  # nbclient is untyped
        current_id: str | None = None

        async def async_execute_cell(self, cell: Any, cell_index: int, *a: Any, **kw: Any) -> Any:
            self.current_id = cell.get("id")
            return await super().async_execute_cell(cell, cell_index, *a, **kw)

        started: dict[str, Any] | None = None  # how the kernel was started, to start again

        async def async_start_new_kernel(self, **kwargs: Any) -> None:
            self.started = kwargs
            await super().async_start_new_kernel(**kwargs)

        async def async_start_new_kernel_client(self) -> Any:
            try:
                kc = await self._answering_client()
            except BaseException:
                forget_exit_hook(self)  # only once the start is given up
                raise
            bounded_waits(kc)
            with_ids(kc, self)
            return kc

        async def _answering_client(self) -> Any:
            try:
                return await self._ready_client()
            except KernelNotReady as exc:
                if not exc.died or self.started is None:
                    raise
                # A kernel that died before it answered most often lost a race for its
                # ports (jupyter_client picks free ones, the kernel binds them a moment
                # later): one more start, on new ports, before the run stops.
                self.km = self.create_kernel_manager()
                await super().async_start_new_kernel(**self.started)
                return await self._ready_client()

        async def _ready_client(self) -> Any:
            if getattr(self, "km", None) is not None:
                self.km.client_factory = ready_at_once(self.km.client_factory)
            return await super().async_start_new_kernel_client()

        # nbclient binds its blocking methods to its own coroutines when the class is made;
        # papermill calls the blocking ones, so bind them to these again.
        start_new_kernel_client = run_sync(async_start_new_kernel_client)
        execute_cell = run_sync(async_execute_cell)

    return CellIdClient


def with_ids(kc: Any, client: Any) -> None:
    """Make the kernel client ``kc`` send the id of ``client``'s current cell with each
    execute request (in its metadata, as JupyterLab does)."""

    def execute(
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Any = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
    ) -> str:
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": kc.allow_stdin if allow_stdin is None else allow_stdin,
            "stop_on_error": stop_on_error,
        }
        metadata = {"cellId": client.current_id} if client.current_id else {}
        msg = kc.session.msg("execute_request", content, metadata=metadata)
        kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    kc.execute = execute


def forget_exit_hook(client: Any) -> None:
    """After a failed start, nbclient has stopped the kernel and dropped its manager; the
    exit hook it registered would fail on the missing manager when the process exits."""
    hook = getattr(client, "_cleanup_kernel", None)
    if hook is not None:
        atexit.unregister(hook)
