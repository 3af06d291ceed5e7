"""`codeserve serve` with the offline default model (the real Qwen2.5-Coder-0.5B-Instruct) on the
built-in CPU engine settings, for benchmarks that measure it through the gateway
(bench.cpu_engine, bench.fidelity)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM to a process started in its own session (`start_new_session=True`), then SIGKILL
    to its whole group if it has not exited within `grace_s` (engines are its children)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def models_yaml(model_dir: Path, name: str) -> str:
    import yaml

    from codeserve.server.defaults import engine_for

    engine = engine_for(True, 0.85, demo=False).model_dump(exclude_defaults=True)
    engine["kind"] = "managed"
    return str(
        yaml.safe_dump({"models": [{"name": name, "model": str(model_dir), "engine": engine}]})
    )


@contextlib.contextmanager
def gateway(models_file: Path, log: Path, env: dict[str, str]) -> Iterator[tuple[str, float]]:
    """A gateway serving `models_file`; yields its URL and the seconds until /ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "codeserve.cli.main",
                "serve",
                "--models-file",
                str(models_file),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the gateway exited with {proc.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() - started > 1800:
                raise SystemExit(f"not ready after 1800 s; see {log}")
            time.sleep(0.5)
        yield url, time.monotonic() - started
    finally:
        stop_group(proc, 90)


@contextlib.contextmanager
def default_model_gateway(work_dir: Path) -> Iterator[tuple[str, str, float]]:
    """The offline default model, prepared (cached after the first time) and served with the
    built-in CPU engine settings; yields (URL, served model name, seconds until /ready).
    models.yaml and the gateway's log go to `work_dir`."""
    from codeserve.server.config import Settings
    from codeserve.server.defaults import OFFLINE_NAME, OFFLINE_SOURCE
    from codeserve.server.model_sources.prepare import prepare_gguf

    prepared = prepare_gguf(OFFLINE_SOURCE, OFFLINE_NAME, Settings().cache_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    models_file = work_dir / "models.yaml"
    models_file.write_text(models_yaml(prepared.path, OFFLINE_NAME))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with gateway(models_file, work_dir / "gateway.log", env) as (url, ready_s):
        yield url, OFFLINE_NAME, ready_s
