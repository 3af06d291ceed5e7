"""Managed engines: one engine server per model (vLLM's OpenAI server, or `transformers serve`
for architectures vLLM lacks: `codeserve.server.engines.backend`), started, watched and
restarted here.

Each engine runs under `codeserve.server.engines.launcher`, which guarantees the engine's whole process
tree dies with the gateway (even on SIGKILL). The supervisor waits for /health, relays the
engine's log lines prefixed with the model name, restarts an engine that exits or stops answering
health checks (exponential backoff), and marks it failed after too many restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

from codeserve.server.config import ManagedEngine
from codeserve.server.engines.backend import engine_profile
from codeserve.server.engines.health import EngineRunner
from codeserve.server.engines.replicas import Replica
from codeserve.server.engines.transformers_serve.command import transformers_command

log = logging.getLogger("codeserve.engines")
engine_log = logging.getLogger("codeserve.engine")

# An engine that stayed up this long is considered healthy again: its backoff starts over.
STABLE_AFTER_S = 120.0
# Lines of an engine's own log repeated when it dies, so the cause is visible at any log level.
TAIL_LINES = 25
# An engine late to answer /health counts as busy (not hung) while its processes use more than
# this share of a core; an idle vLLM server's own housekeeping stays far below it.
BUSY_CPU_SHARE = 0.2
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and every descendant that is not
    stopped: a SIGSTOPped process counts as making no progress."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
        if fields[0] not in ("T", "t", "Z"):
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        todo.extend(_children(current))
    return total


def _kill_group(pgid: int) -> None:
    # The launcher starts the engine in a session of its own: its PID is the group's ID.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def vllm_command(model: str, served_name: str, engine: ManagedEngine, port: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        engine.dtype,
        "--disable-uvicorn-access-log",
    ]
    if engine.max_model_len:
        cmd += ["--max-model-len", str(engine.max_model_len)]
    if engine.gpu_memory_utilization:
        cmd += ["--gpu-memory-utilization", str(engine.gpu_memory_utilization)]
    if engine.max_num_seqs:
        cmd += ["--max-num-seqs", str(engine.max_num_seqs)]
    if engine.enforce_eager:
        cmd.append("--enforce-eager")
    return cmd + list(engine.extra_args)


class ManagedRunner(EngineRunner):
    process: asyncio.subprocess.Process | None = None
    _stopping = False
    _cpu_seen: tuple[float, float] | None = None  # (monotonic time, CPU seconds) of the last look

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)

    @property
    def engine(self) -> ManagedEngine:
        engine = self.entry.spec.engine
        assert isinstance(engine, ManagedEngine)
        return engine

    def engine_command(self, port: int) -> list[str]:
        profile = self.entry.profile = engine_profile(self.entry.spec)
        weights = self.entry.spec.weights
        if profile.backend == "vllm":
            return vllm_command(weights, self.entry.spec.name, self.engine, port)
        if self.entry.max_model_len is None:
            # transformers serve does not report a context length: the models file's, or the
            # model config's, bounds prompts and FIM rendering instead.
            self.entry.max_model_len = self.engine.max_model_len or profile.context_length
        return transformers_command(weights, self.engine, port)

    async def run(self) -> None:
        backoff = self.settings.restart_backoff_initial_s
        restarts = 0
        while not self._stopping:
            started = time.monotonic()
            outcome = await self._run_once()
            # stop() may have set _stopping meanwhile (mypy narrows it from the loop test).
            if self._stopping:
                break  # type: ignore[unreachable]
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff, restarts = self.settings.restart_backoff_initial_s, 0
            restarts += 1
            if restarts > self.settings.max_restarts:
                log.error(
                    "[%s] engine %s; giving up after %d restarts; its last lines:\n%s",
                    self.entry.name,
                    outcome,
                    restarts - 1,
                    "\n".join(self._tail),
                )
                self.set_state("failed")
                return
            self.metrics.engine_restarts.labels(self.entry.name).inc()
            log.warning(
                "[%s] engine %s; restarting in %.1fs; its last lines:\n%s",
                self.entry.name,
                outcome,
                backoff,
                "\n".join(self._tail),
            )
            self.set_state("restarting")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.restart_backoff_max_s)

    async def _run_once(self) -> str:
        """Start the engine, serve until it dies or hangs; returns why it ended."""
        port = self.engine.port or free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "codeserve.server.engines.launcher",
            "--",
            *self.engine_command(port),
        ]
        env = {**os.environ, **self.engine.env}
        if self.entry.state != "restarting":
            self.set_state("starting")
        self.entry.pool.set_urls([])
        self._cpu_seen = None
        log.info("[%s] starting engine on %s", self.entry.name, url)
        self.process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        pump = asyncio.create_task(self._pump_logs(self.process))
        try:
            return await self._watch(self.process, url)
        finally:
            self.entry.pool.set_urls([])
            await self._terminate(self.process, kill=True)
            pump.cancel()

    async def _watch(self, process: asyncio.subprocess.Process, url: str) -> str:
        self.entry.pool.set_urls([url])
        replica = self.entry.pool.replicas[0]
        exited = asyncio.create_task(process.wait())
        timeout = self.engine.startup_timeout_s or self.settings.startup_timeout_s
        deadline = time.monotonic() + timeout
        try:
            # Start-up: poll quickly until the engine answers.
            while not exited.done():
                if await self.check_replica(replica):
                    self.set_state("ready")
                    break
                if time.monotonic() > deadline:
                    return f"did not become healthy within {timeout:.0f}s"
                await asyncio.wait({exited}, timeout=0.5)
            # Serving: slower health checks; a hung engine fails them and gets restarted.
            while not exited.done():
                await asyncio.wait({exited}, timeout=self.settings.health_interval_s)
                if exited.done():
                    break
                await self.check_replica(replica)
                if not replica.healthy:
                    return "stopped answering health checks (hung)"
                self.set_state(self.state_from_replicas())
            return f"exited with code {process.returncode}"
        finally:
            exited.cancel()

    async def making_progress(self, replica: Replica) -> bool:
        """A managed engine is judged by its processes: busy when they used CPU since the last
        look (over a fifth of a core on average). A stopped (SIGSTOP) or deadlocked engine uses
        none, so it still fails its checks and is restarted; a busy one is left to work. Its
        API server can be too starved to answer /health or /metrics in time (measured on 2
        cores: up to 13 s late), but the kernel's accounting always answers."""
        if self.process is None or self.process.returncode is not None:
            return False
        now, cpu = time.monotonic(), tree_cpu_seconds(self.process.pid)
        last, self._cpu_seen = self._cpu_seen, (now, cpu)
        if last is None or now <= last[0]:
            return False
        return (cpu - last[1]) / (now - last[0]) > BUSY_CPU_SHARE

    async def _pump_logs(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        name = self.entry.name
        self._tail.clear()
        while raw := await process.stdout.readline():
            line = raw.decode(errors="replace").rstrip()
            self._tail.append(line)
            engine_log.info("[%s] %s", name, line)

    async def _terminate(self, process: asyncio.subprocess.Process, *, kill: bool) -> None:
        if process.returncode is not None:
            return
        # SIGUSR1 tells the launcher to SIGKILL the engine group at once (a hung engine ignores
        # SIGTERM); SIGTERM lets vLLM drain and exit cleanly.
        try:
            process.send_signal(signal.SIGUSR1 if kill else signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(process.wait(), self.settings.engine_stop_timeout_s)
        except asyncio.TimeoutError:
            # The launcher did not act (wedged or stopped): take the engine's process group
            # down here, since killing the launcher alone would orphan it.
            for leader in _children(process.pid):
                _kill_group(leader)
            process.kill()
            await process.wait()

    async def stop(self) -> None:
        self._stopping = True
        if self.process is not None:
            await self._terminate(self.process, kill=False)

    def engine_pid(self) -> int | None:
        """PID of the launcher (tests kill it or its children to simulate crashes)."""
        return self.process.pid if self.process and self.process.returncode is None else None
