"""Sending each cell's id with its execute request, as JupyterLab does: nbclient sends
none, and the kernel names cells by id (``%nbcache why``, the plan, the run's log)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["with_cell_ids"]


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

        async def async_start_new_kernel_client(self) -> Any:
            kc = await super().async_start_new_kernel_client()
            client = self

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
            return kc

        # nbclient binds its blocking methods to its own coroutines when the class is made;
        # papermill calls the blocking ones, so bind them to these again.
        start_new_kernel_client = run_sync(async_start_new_kernel_client)
        execute_cell = run_sync(async_execute_cell)

    return CellIdClient
