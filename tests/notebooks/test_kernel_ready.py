"""The wait for a kernel ``nbcache run`` starts: it ends when the kernel answered and
IOPub is connected, with no wait for IOPub to fall silent after (jupyter_client's own
waits 0.2 s of silence, every run). No kernel is started: the client's channels are
fakes that count the waits made on them."""

from __future__ import annotations

import asyncio
import atexit
from queue import Empty
from typing import Any

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from nbcache.notebooks import cellids


class Channel:
    """A kernel channel holding ``messages``; each wait takes the next, or ends empty
    (where a real socket would wait out its timeout) for a None or when none is left."""

    def __init__(self, *messages: dict[str, Any] | None) -> None:
        self.messages = list(messages)
        self.waits = 0
        self.empty = 0

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        self.waits += 1
        if not self.messages or self.messages[0] is None:
            if self.messages:
                self.messages.pop(0)
            self.empty += 1
            raise Empty
        message = self.messages.pop(0)
        assert message is not None
        return message


REPLY = {"msg_type": "kernel_info_reply", "content": {}}
STATUS = {"msg_type": "status", "content": {"execution_state": "idle"}}


class FakeKernelClient(AsyncKernelClient):
    """jupyter_client's asynchronous client over channels that are not there."""

    shell_channel: Any = None
    iopub_channel: Any = None
    alive = True

    def kernel_info(self) -> str:
        return "kernel-info"

    async def _async_is_alive(self) -> bool:
        return self.alive

    def _handle_kernel_info_reply(self, msg: dict[str, Any]) -> None:
        self.answered = msg


def _start(shell: Channel, iopub: Channel, alive: bool = True) -> Any:
    """Start a client as nbclient does, through the client ``nbcache run`` uses."""

    class Base:
        def __init__(self) -> None:
            self.km = AsyncKernelManager()
            self.km.client_factory = FakeKernelClient

        async def async_start_new_kernel_client(self) -> Any:
            kc: Any = self.km.client()
            kc.shell_channel, kc.iopub_channel, kc.alive = shell, iopub, alive
            await kc.wait_for_ready(timeout=60)
            return kc

        async def async_execute_cell(self, *a: Any, **kw: Any) -> Any:
            return None

    return asyncio.run(cellids.with_cell_ids(Base)().async_start_new_kernel_client())


def test_the_wait_for_a_started_kernel_ends_when_iopub_gave_a_message() -> None:
    """jupyter_client read IOPub after the kernel answered until a wait of 0.2 s ended
    empty: a pause before every run's first cell (a quarter of the edited run of a
    notebook of small cells). The messages left are no cell's: nbclient passes them."""
    shell, iopub = Channel(REPLY), Channel(STATUS, STATUS)
    kc = _start(shell, iopub)
    assert kc.answered is REPLY
    assert (shell.waits, iopub.waits) == (1, 1)
    assert iopub.empty == 0  # no wait for silence
    assert iopub.messages == [STATUS]


def test_a_kernel_whose_iopub_is_not_connected_yet_is_asked_again() -> None:
    shell, iopub = Channel(REPLY, REPLY), Channel(None, STATUS)
    kc = _start(shell, iopub)
    assert kc.answered is REPLY
    assert (shell.waits, iopub.waits, iopub.empty) == (2, 2, 1)


def test_a_kernel_that_died_before_it_answered_says_so() -> None:
    with pytest.raises(RuntimeError, match="died before it answered"):
        _start(Channel(None), Channel(), alive=False)


class Restarting:
    """nbclient's part of a start, faked: the first ``deaths`` kernels die before they
    answer, the next answers."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        self.starts = 0

    def _cleanup_kernel(self) -> None:
        """nbclient's exit hook, registered around a run."""

    def create_kernel_manager(self) -> None:
        pass

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        self.starts += 1

    async def async_start_new_kernel_client(self) -> Any:
        if self.starts <= self.deaths:
            raise cellids.KernelNotReady("the kernel died before it answered", died=True)
        kc = FakeKernelClient()
        kc.shell_channel, kc.iopub_channel = Channel(), Channel()
        return kc

    async def async_execute_cell(self, *a: Any, **kw: Any) -> Any:
        return None


def _started(deaths: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    """A start through nbcache's client whose first ``deaths`` kernels die: the client,
    and the exit hooks the start unregistered."""
    forgotten: list[Any] = []
    monkeypatch.setattr(atexit, "unregister", forgotten.append)
    client = cellids.with_cell_ids(Restarting)(deaths)

    async def start() -> None:
        await client.async_start_new_kernel()
        await client.async_start_new_kernel_client()

    try:
        asyncio.run(start())
    except cellids.KernelNotReady:
        pass
    return client, forgotten


def test_a_kernel_that_died_at_its_start_is_started_once_more_keeping_the_exit_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, forgotten = _started(1, monkeypatch)
    assert client.starts == 2
    assert forgotten == []  # the run goes on: nbclient's hook still stops the kernel at exit


def test_a_kernel_that_dies_twice_stops_the_start_and_forgets_the_exit_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, forgotten = _started(2, monkeypatch)
    assert client.starts == 2
    assert forgotten == [client._cleanup_kernel]  # its manager is gone: it would fail at exit
