"""Graceful shutdown: drain first, then let uvicorn stop.

Uvicorn on SIGTERM closes its listener at once, so a load balancer that still routes here sees
refused connections before readiness ever failed. Instead, the first SIGTERM/SIGINT starts a drain:
/ready answers 503 (balancers take the gateway out of rotation), new requests get a quick 503 with
`Retry-After` and `Connection: close`, and requests already in flight run to completion for at most
`shutdown_grace_s`. Only then does uvicorn close the listener and run the lifespan shutdown that
stops the engines. A second signal skips the rest of the drain.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType

import uvicorn
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from codeserve.server.errors import UnavailableError

log = logging.getLogger("codeserve")

# After the drain, uvicorn's own graceful shutdown only has to flush responses being written.
AFTER_DRAIN_S = 2


class Drain:
    """Whether the gateway is draining, and how many requests are in flight."""

    def __init__(self) -> None:
        self.draining = False
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.draining = True

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True when every request finished within the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True


class DrainMiddleware:
    """Counts requests in flight; while draining, refuses new ones (probes excepted)."""

    def __init__(self, app: ASGIApp, drain: Drain, probe_paths: frozenset[str]) -> None:
        self.app = app
        self.drain = drain
        self.probe_paths = probe_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.probe_paths:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            # Connection: close moves keep-alive clients to another replica.
            err = UnavailableError(
                "the gateway is shutting down; retry on another replica",
                code="shutting_down",
                headers={"Retry-After": "5", "Connection": "close"},
            )
            await JSONResponse(err.body(), err.status_code, headers=err.headers)(
                scope, receive, send
            )
            return
        self.drain.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.leave()


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal drains the app before the usual shutdown."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_signal: int | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: only hand the work to the loop. Before start-up finished,
        # or on a second signal, fall back to uvicorn's immediate shutdown.
        if self._drain_signal is not None or not self.started or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._drain_signal = sig
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        self.drain.begin()
        log.info(
            "draining: readiness fails and new requests get 503; waiting up to %.0fs for "
            "%d request(s) in flight",
            self.grace_s,
            self.drain.active,
        )
        if await self.drain.wait_idle(self.grace_s):
            log.info("drained; shutting down")
        else:
            log.warning(
                "grace period of %.0fs over; cutting %d request(s) still in flight",
                self.grace_s,
                self.drain.active,
            )
        if not self.should_exit and self._drain_signal is not None:
            super().handle_exit(self._drain_signal, None)


def draining_server(
    app: ASGIApp,
    drain: Drain,
    *,
    host: str,
    port: int,
    log_level: str,
    access_log: bool,
    grace_s: float,
) -> DrainingServer:
    """The gateway's uvicorn server, whose first exit signal drains before the shutdown."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=AFTER_DRAIN_S,
    )
    return DrainingServer(config, drain, grace_s)


def serve(
    app: ASGIApp,
    drain: Drain,
    *,
    host: str,
    port: int,
    log_level: str,
    access_log: bool,
    grace_s: float,
) -> None:
    """Run the gateway on uvicorn until a signal, draining before the shutdown."""
    draining_server(
        app,
        drain,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        grace_s=grace_s,
    ).run()
