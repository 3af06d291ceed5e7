"""Helpers to run the real gateway with real vLLM engines as subprocesses, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

DEMO_FAMILIES = {"qwen-demo": "qwen2.5-coder", "starcoder2-demo": "starcoder2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.5, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def open_request(base_url: str, body: dict) -> socket.socket:
    """Send a completion request on a raw socket, so the test decides when the client drops
    (or how slowly it reads)."""
    host, port = base_url.removeprefix("http://").split(":")
    payload = orjson.dumps(body)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json"
        b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )
    return sock


def read_until(sock: socket.socket, marker: bytes, received: bytes = b"") -> bytes:
    """Everything received on `sock` until `marker` (AssertionError if it closes first)."""
    while marker not in received:
        chunk = sock.recv(65536)
        assert chunk, received[-2000:]
        received += chunk
    return received


def gateway_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "CODESERVE_HEALTH_INTERVAL_S": "1",
            "CODESERVE_HEALTH_TIMEOUT_S": "2",
            "CODESERVE_RESTART_BACKOFF_INITIAL_S": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
        }
    )
    env.update(extra)
    return env


def managed_models_yaml(models: dict[str, Path], ports: dict[str, int]) -> str:
    lines = ["models:"]
    for name, path in models.items():
        lines += [
            f"  - name: {name}",
            f"    model: {path}",
            "    engine:",
            "      kind: managed",
            "      dtype: float32",
            "      max_model_len: 2048",
            "      enforce_eager: true",
            f"      port: {ports[name]}",
            "      env: {VLLM_CPU_KVCACHE_SPACE: '1'}",
        ]
    return "\n".join(lines) + "\n"


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Stack:
    gateway_url: str
    engine_urls: dict[str, str]
    model_dirs: dict[str, Path]
    process: subprocess.Popen
    log_path: Path
    models: list[str] = field(default_factory=list)

    def engine_pids(self, name: str) -> list[int]:
        """PIDs of the vLLM API server of `name` (found by its port); not of the launcher
        above it, whose command line holds the same words after `--`."""
        import psutil

        port = self.engine_urls[name].rsplit(":", 1)[1]
        pids = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if (
                "vllm.entrypoints.openai.api_server" in cmd
                and port in cmd
                and "codeserve.server.engines.launcher" not in cmd
            ):
                pids.append(proc.pid)
        return pids

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_gateway(models_file: Path, log_path: Path, port: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
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
        cwd=REPO,
        env=gateway_env(**env),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_gateway(proc: subprocess.Popen, timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def survivors(processes: list, timeout: float = 30) -> list:
    """The psutil processes still alive (not zombies) once `timeout` has passed, or [] earlier."""
    import psutil

    deadline = time.monotonic() + timeout
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if alive:
            time.sleep(0.5)
    return alive
