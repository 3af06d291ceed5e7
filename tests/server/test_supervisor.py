"""The supervisor's lifecycle with a stand-in engine (the mock upstream as a child process):
start, crash, hang, backoff, give up, stop. Real vLLM engines are covered in
test_gateway_vllm.py; this checks the state machine quickly and deterministically."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import psutil
import pytest

from codeserve.server.config import ManagedEngine, ModelSpec, Settings
from codeserve.server.engines import supervisor
from codeserve.server.engines.client import new_session
from codeserve.server.engines.health import ModelEntry
from codeserve.server.engines.replicas import ReplicaPool
from codeserve.server.engines.supervisor import ManagedRunner, vllm_command
from codeserve.server.metrics import GatewayMetrics


def fake_vllm(model: str, served_name: str, engine: ManagedEngine, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "codeserve.loadtest.mock_server",
        "--port",
        str(port),
        "--model-name",
        served_name,
    ]


@pytest.fixture
async def runner_factory(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(supervisor, "vllm_command", fake_vllm)
    made: list[tuple[ManagedRunner, asyncio.Task[None]]] = []

    async def make(**overrides: object) -> tuple[ManagedRunner, asyncio.Task[None]]:
        settings = Settings(
            health_interval_s=0.2,
            health_timeout_s=0.5,
            restart_backoff_initial_s=0.1,
            engine_stop_timeout_s=5,
            **overrides,
        )
        spec = ModelSpec(name="m", model="unused", engine=ManagedEngine(kind="managed"))
        entry = ModelEntry(spec=spec, pool=ReplicaPool())
        metrics = GatewayMetrics()
        metrics.register_model("m")
        session = new_session(1, 5)
        runner = ManagedRunner(entry, session, settings, metrics)
        task = asyncio.create_task(runner.run())
        made.append((runner, task))
        return runner, task

    yield make
    for runner, task in made:  # also when a test failed half-way: no stray engines
        if not task.done() or not runner.session.closed:
            await shutdown(runner, task)


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


def engine_process(runner: ManagedRunner) -> psutil.Process:
    launcher = psutil.Process(runner.engine_pid())
    children = launcher.children()
    assert len(children) == 1
    return children[0]


async def shutdown(runner: ManagedRunner, task: asyncio.Task[None]) -> list[psutil.Process]:
    tree = []
    if runner.engine_pid():
        launcher = psutil.Process(runner.engine_pid())
        tree = [launcher, *launcher.children(recursive=True)]
    await runner.stop()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    if not runner.session.closed:
        await runner.session.close()
    return tree


async def test_starts_restarts_after_crash_and_stops_cleanly(runner_factory) -> None:
    runner, task = await runner_factory()
    await until(lambda: runner.entry.state == "ready")
    assert runner.entry.pool.any_available()
    first = engine_process(runner)
    os.kill(first.pid, signal.SIGKILL)
    await until(lambda: runner.entry.state in ("restarting", "starting"))
    assert not runner.entry.pool.any_available()
    await until(lambda: runner.entry.state == "ready")
    assert engine_process(runner).pid != first.pid
    assert runner.metrics.engine_restarts.labels("m")._value.get() == 1
    tree = await shutdown(runner, task)
    await until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree),
        timeout=10,
    )


async def test_hung_engine_is_restarted(runner_factory) -> None:
    runner, task = await runner_factory(health_failures_to_eject=2)
    await until(lambda: runner.entry.state == "ready")
    hung = engine_process(runner)
    os.kill(hung.pid, signal.SIGSTOP)
    await until(lambda: runner.entry.state in ("restarting", "starting"), timeout=10)
    await until(lambda: not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE, 10)
    await until(lambda: runner.entry.state == "ready")


async def test_wedged_launcher_still_takes_its_engine_down(runner_factory) -> None:
    """The launcher itself stops responding (here: stopped along with its engine): the
    supervisor kills the engine's process group itself, so no engine outlives the launcher."""
    runner, task = await runner_factory(health_failures_to_eject=2)
    await until(lambda: runner.entry.state == "ready")
    launcher = psutil.Process(runner.engine_pid())
    engine = engine_process(runner)
    for proc in (engine, launcher):
        proc.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: runner.entry.state in ("restarting", "starting"), timeout=15)
        await until(
            lambda: not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE, timeout=5
        )
        await until(lambda: runner.entry.state == "ready")
    finally:
        for proc in (engine, launcher):
            if proc.is_running():
                proc.send_signal(signal.SIGCONT)


async def test_gives_up_after_max_restarts(runner_factory, monkeypatch) -> None:
    monkeypatch.setattr(
        supervisor, "vllm_command", lambda *a: [sys.executable, "-c", "raise SystemExit(3)"]
    )
    runner, task = await runner_factory(max_restarts=2)
    await asyncio.wait_for(task, 20)
    assert runner.entry.state == "failed"
    assert runner.metrics.engine_restarts.labels("m")._value.get() == 2


def test_vllm_command_carries_the_engine_options() -> None:
    engine = ManagedEngine(
        kind="managed",
        dtype="bfloat16",
        max_model_len=4096,
        gpu_memory_utilization=0.4,
        max_num_seqs=64,
        enforce_eager=True,
        extra_args=["--enable-prefix-caching"],
    )
    cmd = vllm_command("org/model", "public", engine, 9001)
    joined = " ".join(cmd)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    for part in (
        "--model org/model",
        "--served-model-name public",
        "--port 9001",
        "--dtype bfloat16",
        "--max-model-len 4096",
        "--gpu-memory-utilization 0.4",
        "--max-num-seqs 64",
        "--enforce-eager",
        "--enable-prefix-caching",
    ):
        assert part in joined
