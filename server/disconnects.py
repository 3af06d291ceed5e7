"""Noticing a client that went away, so the work done for it can be cancelled.

Uvicorn does not cancel a handler when its client disconnects; it only reports
`http.disconnect` to whoever awaits `receive()`. Work that can take long (waiting in the admission
queue, waiting for an engine's answer) therefore races against that message: cancelling the
engine request closes its connection, which is how the engine learns to stop generating.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away; the work done for it was cancelled."""


async def wait_for_disconnect(request: Request) -> None:
    # The body has been read already, so the only message left to come is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Result of `work`, or ClientDisconnected once the client is gone (`work` is cancelled
    and its clean-up has run before this returns)."""
    task = asyncio.ensure_future(work)
    await settle_unless_disconnected(request, task, None)
    return task.result()


async def settle_unless_disconnected(
    request: Request, task: asyncio.Future[Any], timeout: float | None
) -> bool:
    """Wait up to `timeout` for `task`: True once it is done, False when the time ran out
    first. When the client goes away, `task` is cancelled, its clean-up runs, and
    ClientDisconnected is raised."""
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait((task, watcher), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()  # the handler itself is being cancelled (server shutdown)
        raise
    finally:
        gone = watcher.done()
        watcher.cancel()
    if task.done():
        return True
    if not gone:
        return False
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientDisconnected()
