"""Gateway overhead against a fast mock upstream (no model): direct, through Codeserve, and
through LiteLLM proxy, in one run.

    python -m bench.gateway_overhead [--requests 2000] [--no-litellm]

For each target: closed loop at concurrency 1 and 32, non-streaming (16 tokens) and 32-chunk
streaming. Prints requests/s, p50/p99 latency and each proxy's own CPU milliseconds per request,
read from /proc (utime+stime of the proxy process and its children). LiteLLM runs from its own
venv (.venv-litellm, created on first use with `pip install 'litellm[proxy]'`) because its pins
clash with vLLM's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerProcess

REPO = Path(__file__).resolve().parents[1]
LITELLM_VENV = REPO / ".venv-litellm"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "mock-model"
# LiteLLM refuses to start without a master key; every target gets the same header.
BENCH_KEY = "sk-codeserve-bench-0123456789abcdef"


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its reaped children plus its live children."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / CLK_TCK
    return total


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers 200 (fails at once if the server process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def proxy_process(
    config_name: str,
    config_text: str,
    command: list[str],
    ready_path: str,
    env: dict[str, str],
    timeout: float,
) -> Iterator[tuple[str, int]]:
    """A proxy on a free port with its config in a temp file ({config} and {port} in
    `command` are filled in); yields its base URL and PID once `ready_path` answers 200."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / config_name
        config.write_text(config_text)
        argv = [a.format(config=config, port=port) for a in command]
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + ready_path, timeout=timeout, proc=proc)
            yield base, proc.pid
        finally:
            proc.terminate()
            proc.wait(30)


def codeserve_gateway(
    upstream: str, **env: str
) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """`codeserve serve` in front of `upstream`; `env` adds CODESERVE_* settings."""
    config = (
        "models:\n  - name: mock-model\n    model: mock-model\n    engine:\n"
        f"      kind: upstream\n      urls: ['{upstream}']\n"
    )
    command = [
        sys.executable,
        "-m",
        "codeserve.cli.main",
        "serve",
        "--models-file",
        "{config}",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    ]
    return proxy_process(
        "models.yaml", config, command, "/ready", {"HF_HUB_OFFLINE": "1", **env}, 30
    )


def litellm_available() -> bool:
    if (LITELLM_VENV / "bin" / "litellm").exists():
        return True
    print("installing LiteLLM proxy into .venv-litellm (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    result = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"])
    return result.returncode == 0


def litellm_proxy(upstream: str) -> contextlib.AbstractContextManager[tuple[str, int]]:
    config = (
        "model_list:\n  - model_name: mock-model\n    litellm_params:\n"
        f"      model: openai/mock-model\n      api_base: {upstream}/v1\n"
        "      api_key: unused\n"
        "litellm_settings:\n  drop_params: true\n  telemetry: false\n"
    )
    env = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
        "LITELLM_MASTER_KEY": BENCH_KEY,
    }
    command = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        "{config}",
        "--port",
        "{port}",
        "--num_workers",
        "1",
    ]
    return proxy_process("litellm.yaml", config, command, "/health/liveliness", env, 120)


@dataclass
class Result:
    target: str
    mode: str
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    cpu_ms_per_request: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=100)[int(q) - 1] * 1000


async def closed_loop(
    base: str, stream: bool, concurrency: int, total: int
) -> tuple[float, list[float]]:
    body: dict[str, object] = {
        "model": MODEL,
        "prompt": "def f():",
        "max_tokens": 32 if stream else 16,
    }
    if stream:
        body["stream"] = True
    url = base + "/v1/completions"
    latencies: list[float] = []
    remaining = total
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                async with session.post(
                    url, json=body, headers={"Authorization": f"Bearer {BENCH_KEY}"}
                ) as resp:
                    data = await resp.read()
                    if resp.status != 200 or (stream and not data.endswith(b"[DONE]\n\n")):
                        raise RuntimeError(f"{base}: HTTP {resp.status}: {data[:200]!r}")
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def measure(target: str, base: str, pid: int | None, requests: int) -> list[Result]:
    results = []
    for stream in (False, True):
        for concurrency in (1, 32):
            n = requests if concurrency > 1 else max(200, requests // 4)
            asyncio.run(closed_loop(base, stream, concurrency, min(n, 200)))  # warm-up
            before = cpu_seconds(pid) if pid else 0.0
            seconds, latencies = asyncio.run(closed_loop(base, stream, concurrency, n))
            cpu = (cpu_seconds(pid) - before) * 1000 / n if pid else None
            results.append(
                Result(
                    target,
                    "stream32" if stream else "unary",
                    concurrency,
                    n,
                    seconds,
                    latencies,
                    cpu,
                )
            )
    return results


def print_table(results: list[Result]) -> None:
    print(
        f"{'target':<10} {'mode':<9} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'proxy CPU ms/req':>17}"
    )
    for r in results:
        cpu = f"{r.cpu_ms_per_request:.2f}" if r.cpu_ms_per_request is not None else "-"
        print(
            f"{r.target:<10} {r.mode:<9} {r.concurrency:>3} {r.rps:>8.0f} {r.pct(50):>8.2f} "
            f"{r.pct(99):>8.2f} {cpu:>17}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    results: list[Result] = []
    mock = MockServerProcess(MockConfig(model_name=MODEL, ttft_ms=0, itl_ms=0))
    with mock as upstream:
        results += measure("direct", upstream, None, args.requests)
        with codeserve_gateway(upstream) as (base, pid):
            results += measure("codeserve", base, pid, args.requests)
        if not args.no_litellm and litellm_available():
            with litellm_proxy(upstream) as (base, pid):
                results += measure("litellm", base, pid, max(200, args.requests // 10))
    print_table(results)
    ours = {(r.mode, r.concurrency): r for r in results if r.target == "codeserve"}
    theirs = {(r.mode, r.concurrency): r for r in results if r.target == "litellm"}
    print()
    for mode, budget in (("unary", 1.0), ("stream32", 2.0)):
        cpu = max(ours[(mode, c)].cpu_ms_per_request or 0 for c in (1, 32))
        verdict = "meets" if cpu <= budget else "MISSES"
        print(f"codeserve {mode}: worst CPU {cpu:.2f} ms/request, budget {budget} ms: {verdict}")
        for c in (1, 32):
            if (mode, c) in theirs:
                ratio = ours[(mode, c)].rps / theirs[(mode, c)].rps
                print(
                    f"  c={c}: {ratio:.1f}x LiteLLM's requests/s "
                    f"({'meets' if ratio >= 10 else 'MISSES'} the 10x target)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
