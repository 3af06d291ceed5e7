"""A cheap mock of a vLLM OpenAI server, for tests and benchmarks.

Run it: `python -m codeserve.loadtest.mock_server --port 0 --ttft-ms 50 --itl-ms 10` prints
`mock-server listening on http://127.0.0.1:PORT` once it accepts connections. In tests:

    async with MockServer(MockConfig(itl_ms=5)) as url:      # in the test's event loop
    with MockServerThread(MockConfig()) as url:              # from synchronous code
    with MockServerProcess(MockConfig()) as url:             # its own process (own CPU)

Served: POST /v1/completions, POST /v1/chat/completions (streamed or not), GET /v1/models,
GET /health, GET /metrics (vLLM gauge names), GET /mock/stats, POST /mock/reset,
GET|POST /mock/config (POST merges a JSON patch into the running config).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import signal
import subprocess
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from codeserve.common.errors import validation_message
from codeserve.loadtest.mock_config import MockConfig, MockStats
from codeserve.loadtest.mock_encoding import (
    Kind,
    Plan,
    StreamEncoder,
    error_body,
    full_body,
    models_body,
)
from codeserve.loadtest.mock_requests import BadRequest, build_plan

_JSON = "application/json"
_DISCONNECTS = (asyncio.CancelledError, ConnectionResetError)


def _json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


class MockUpstream:
    """Request handlers and live state (config, counters, concurrency cap) of one mock."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.stats = MockStats()
        self.started = int(time.time())
        self._rng = random.Random(config.seed)
        self._ids = itertools.count(1)
        self._slots = self._make_slots(config)

    @staticmethod
    def _make_slots(config: MockConfig) -> asyncio.Semaphore | None:
        return asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/mock/stats", self.get_stats)
        app.router.add_post("/mock/reset", self.reset)
        app.router.add_get("/mock/config", self.get_config)
        app.router.add_post("/mock/config", self.patch_config)
        return app

    # -- control and observation -------------------------------------------------------------

    def apply_patch(self, patch: dict[str, Any]) -> None:
        """Change behaviour at run time; requests already admitted keep their old slot pool."""
        config = MockConfig(**{**self.config.model_dump(), **patch})
        if config.max_concurrency != self.config.max_concurrency:
            self._slots = self._make_slots(config)
        if config.seed != self.config.seed:
            self._rng = random.Random(config.seed)
        self.config = config

    def reset_counters(self) -> None:
        live = (self.stats.running, self.stats.waiting)
        self.stats = MockStats()
        self.stats.running, self.stats.waiting = live

    async def get_stats(self, request: web.Request) -> web.Response:
        return _json_response(orjson.dumps(self.stats.as_dict()))

    async def reset(self, request: web.Request) -> web.Response:
        self.reset_counters()
        return _json_response(orjson.dumps(self.stats.as_dict()))

    async def get_config(self, request: web.Request) -> web.Response:
        return _json_response(orjson.dumps(self.config.model_dump()))

    async def patch_config(self, request: web.Request) -> web.Response:
        try:
            patch = orjson.loads(await request.read())
            if not isinstance(patch, dict):
                raise ValueError("the patch must be a JSON object")
            self.apply_patch(patch)
        except (ValueError, ValidationError) as exc:
            return _json_response(error_body(str(exc).splitlines()[0], 400), 400)
        return await self.get_config(request)

    async def models(self, request: web.Request) -> web.Response:
        return _json_response(models_body(self.config.model_name, self.started))

    async def health(self, request: web.Request) -> web.Response:
        if self.config.busy_health_delay_ms and self.stats.running:
            await asyncio.sleep(self.config.busy_health_delay_ms / 1000)
        return web.Response(status=self.config.health_status)

    async def metrics(self, request: web.Request) -> web.Response:
        label = f'{{model_name="{self.config.model_name}"}}'
        s = self.stats
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {float(s.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {float(s.waiting)}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {float(s.output_tokens)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{label} {float(s.completed)}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # -- generation --------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completion")

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    def _pick_fault(self, request_no: int) -> str | None:
        config = self.config
        if request_no <= config.fail_first:
            return "fail"
        if not (config.fail_rate or config.hang_rate or config.die_rate):
            return None
        draw = self._rng.random()
        for fault, rate in (
            ("fail", config.fail_rate),
            ("hang", config.hang_rate),
            ("die", config.die_rate),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return None

    async def _generate(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        stats = self.stats
        stats.received += 1
        request_no = stats.received
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        try:
            body = orjson.loads(await request.read())
            plan = build_plan(self.config, kind, body, f"{prefix}-mock-{next(self._ids)}")
        except orjson.JSONDecodeError:
            stats.rejected += 1
            return _json_response(error_body("request body is not valid JSON", 400), 400)
        except BadRequest as exc:
            stats.rejected += 1
            return _json_response(error_body(exc.message, exc.status, exc.param), exc.status)
        fault = self._pick_fault(request_no)
        if fault == "fail":
            stats.failed += 1
            status = self.config.fail_status
            return _json_response(error_body("injected failure", status), status)
        slots = self._slots
        admitted = False
        try:
            stats.waiting += 1
            try:
                if slots is not None:
                    await slots.acquire()
            finally:
                stats.waiting -= 1
            admitted = True
            stats.running += 1
            stats.max_running = max(stats.max_running, stats.running)
            if fault == "hang":
                stats.hung += 1
                await asyncio.Event().wait()  # until the client gives up
            die = fault == "die"
            if body.get("stream"):
                return await self._stream(request, plan, die)
            return await self._whole(request, plan, die)
        except _DISCONNECTS:
            stats.aborted += 1
            raise
        finally:
            if admitted:
                stats.running -= 1
                if slots is not None:
                    slots.release()

    def _drop_connection(self, request: web.Request) -> web.Response:
        self.stats.died += 1
        if request.transport is not None:
            request.transport.abort()
        # aiohttp cannot send this on an aborted transport; it only ends the handler.
        return web.Response(status=500)

    async def _pause_until(self, deadline: float) -> None:
        delay = deadline - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _whole(self, request: web.Request, plan: Plan, die: bool) -> web.Response:
        config = self.config
        start = asyncio.get_running_loop().time()
        steps = len(plan.tokens)
        if die:
            await self._pause_until(
                start + (config.ttft_ms + config.die_after_tokens * config.itl_ms) / 1e3
            )
            return self._drop_connection(request)
        if config.itl_ms >= 50:
            # Slow generations count their tokens as they go, like vLLM's metrics (the gateway
            # reads them to tell a busy engine from a hung one); fast ones sleep once.
            for step in range(steps):
                await self._pause_until(start + (config.ttft_ms + step * config.itl_ms) / 1e3)
                self.stats.output_tokens += plan.choices
        else:
            await self._pause_until(
                start + (config.ttft_ms + max(steps - 1, 0) * config.itl_ms) / 1e3
            )
            self.stats.output_tokens += steps * plan.choices
        response = _json_response(full_body(plan))
        await response.prepare(request)
        await response.write_eof()
        self.stats.completed += 1
        return response

    async def _stream(self, request: web.Request, plan: Plan, die: bool) -> web.StreamResponse:
        config = self.config
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        encoder = StreamEncoder(plan)
        ttft, itl = config.ttft_ms / 1e3, config.itl_ms / 1e3
        start = asyncio.get_running_loop().time()
        steps = len(plan.tokens)
        if steps == 0 and not die:
            await self._pause_until(start + ttft)
            await response.write(encoder.empty_finish())
        for step in range(steps):
            if die and step == config.die_after_tokens:
                break
            # Absolute deadlines: delays do not drift however long a write takes.
            await self._pause_until(start + ttft + step * itl)
            await response.write(encoder.step(step))
            self.stats.output_tokens += plan.choices
        if die:
            self._drop_connection(request)
            return response
        await response.write(encoder.tail())
        await response.write_eof()
        self.stats.completed += 1
        return response


class MockServer:
    """The mock inside the running event loop: `async with MockServer(config) as url:`."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.upstream = MockUpstream(config or MockConfig())
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def stats(self) -> MockStats:
        return self.upstream.stats

    @property
    def config(self) -> MockConfig:
        return self.upstream.config

    async def start(self) -> str:
        # handler_cancellation: a client that hangs up cancels its handler, which is how the
        # mock notices disconnects while it sleeps between tokens.
        runner = web.AppRunner(
            self.upstream.build_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, backlog=1024)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class MockServerThread:
    """The mock on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.server = MockServer(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mock-server", daemon=True
        )

    @property
    def stats(self) -> MockStats:
        return self.server.stats

    @property
    def url(self) -> str:
        return self.server.url

    def patch(self, **changes: Any) -> None:
        """Change behaviour at run time (waits until applied; invalid values raise)."""

        async def apply() -> None:
            self.server.upstream.apply_patch(changes)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(timeout=10)

    def __enter__(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def config_to_args(config: MockConfig) -> list[str]:
    """Command-line flags reproducing `config` (only fields that differ from the defaults)."""
    args: list[str] = []
    for name, value in config.model_dump(exclude_defaults=True).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args


class MockServerProcess:
    """The mock in a child process, so its CPU is not charged to the caller's process."""

    def __init__(self, config: MockConfig | None = None, start_timeout: float = 20.0) -> None:
        self.config = config or MockConfig()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> str:
        cmd = [sys.executable, "-m", "codeserve.loadtest.mock_server", *config_to_args(self.config)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        ready = threading.Event()
        line: list[str] = []

        def read_banner() -> None:
            assert self.process is not None and self.process.stdout is not None
            line.append(self.process.stdout.readline())
            ready.set()

        threading.Thread(target=read_banner, daemon=True).start()
        if not ready.wait(self.start_timeout) or "listening on " not in line[0]:
            self.__exit__()
            raise RuntimeError(f"mock server did not start: {line[0] if line else 'timeout'}")
        self.url = line[0].split("listening on ", 1)[1].strip()
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _flag_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m codeserve.loadtest.mock_server",
        description="Mock vLLM OpenAI server with controllable delays, queueing and faults.",
        argument_default=argparse.SUPPRESS,
    )
    for name, field in MockConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = _flag_type(field.annotation)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=field.description)
        else:
            parser.add_argument(
                flag, type=kind, help=f"{field.description or ''} (default {field.default})".strip()
            )
    return parser


async def _serve(config: MockConfig) -> None:
    server = MockServer(config)
    url = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock-server listening on {url}", flush=True)
    await stop.wait()
    await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = MockConfig(**vars(args))
    except ValidationError as exc:
        print(f"mock-server: error: {validation_message(exc)}", file=sys.stderr)
        return 2
    run: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # uvloop is optional; the stdlib loop is just slower
        run = asyncio.run
    try:
        run(_serve(config))
    except OSError as exc:
        print(
            f"mock-server: error: cannot listen on {config.host}:{config.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
