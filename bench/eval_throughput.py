"""Eval throughput directly against a vLLM server vs. through the Codeserve gateway.

    python -m bench.eval_throughput --data-dir DIR                       # starts its own stack
    python -m bench.eval_throughput --direct URL --gateway URL --model M  # servers already up

Without URLs it builds a tiny demo model, starts one vLLM OpenAI server for it and a gateway
(`codeserve serve`) that proxies to that same server (an `upstream` engine), so both paths hit the
same engine. It then runs the same greedy HumanEval eval (deterministic, so both paths generate
the same tokens) alternately against each path and prints candidates/s and the gateway/direct
ratio (target >= 0.95).
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
from pathlib import Path

import httpx

from bench.real_gateway import free_port, stop_group
from codeserve.client.eval_run import EvalConfig, run_eval
from codeserve.client.protocol import SamplingParams

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.95


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        time.sleep(1)
    raise SystemExit(f"{url} not ready after {timeout_s:.0f}s; see {log}")


@contextlib.contextmanager
def started(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=REPO
        )
    try:
        yield proc
    finally:
        stop_group(proc, 30)


@contextlib.contextmanager
def own_stack(work: Path, model: str) -> Iterator[tuple[str, str]]:
    """(direct engine URL, gateway URL), both serving `model` from one demo vLLM engine."""
    python = sys.executable
    model_dir = work / "model"
    subprocess.run(
        [
            python,
            "-m",
            "codeserve.cli.main",
            "demo-model",
            str(model_dir),
            "--family",
            "qwen2.5-coder",
        ],
        check=True,
        cwd=REPO,
    )
    engine_port, gateway_port = free_port(), free_port()
    engine_cmd = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(engine_port),
        "--enforce-eager",
        "--max-model-len",
        "2048",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    direct = f"http://127.0.0.1:{engine_port}"
    models_file = work / "models.yaml"
    models_file.write_text(
        f"models:\n  - name: {model}\n    model: {model_dir}\n    engine:\n"
        f"      kind: upstream\n      urls: ['{direct}']\n      served_model_name: {model}\n"
    )
    gateway = f"http://127.0.0.1:{gateway_port}"
    with started(engine_cmd, work / "engine.log", env) as engine:
        print(f"starting vLLM engine on {direct} (log {work / 'engine.log'})", file=sys.stderr)
        wait_ready(direct, engine, 600, work / "engine.log")
        gateway_cmd = [
            python,
            "-m",
            "codeserve.cli.main",
            "serve",
            "--models-file",
            str(models_file),
            "--port",
            str(gateway_port),
            "--log-level",
            "warning",
        ]
        with started(gateway_cmd, work / "gateway.log") as gw:
            wait_ready(gateway, gw, 120, work / "gateway.log")
            yield direct, gateway


def one_run(url: str, args: argparse.Namespace, out: Path) -> tuple[float, float | None]:
    config = EvalConfig(
        benchmark="humaneval",
        model=args.model,
        endpoint=url + "/v1",
        n=args.n,
        sampling=SamplingParams(temperature=0.0, max_tokens=args.max_tokens, seed=0),
        limit=args.limit,
        out_dir=out,
        concurrency=args.concurrency,
        data_dir=args.data_dir,
        stream=args.stream,
        progress=False,
    )
    results = asyncio.run(run_eval(config)).results
    tp = results.throughput
    if tp.failed_requests or tp.candidates_per_s is None:
        raise SystemExit(f"{url}: {tp.failed_requests} failed requests; see {out}")
    return tp.candidates_per_s, tp.output_tokens_per_s


def measure(direct: str, gateway: str, args: argparse.Namespace, work: Path) -> None:
    one_run(direct, args, work / "warmup")  # compiles kernels, fills the prefix cache
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    tokens: dict[str, list[float]] = {"direct": [], "gateway": []}
    for round_no in range(args.rounds):
        # Alternate the order so drift in machine load hits both paths alike.
        order = [("direct", direct), ("gateway", gateway)]
        for name, url in order if round_no % 2 == 0 else order[::-1]:
            cps, tps = one_run(url, args, work / f"{name}-{round_no}")
            rates[name].append(cps)
            tokens[name].append(tps or 0.0)
            print(
                f"round {round_no + 1} {name:8} {cps:8.2f} candidates/s  "
                f"{tps or 0:9.1f} output tokens/s",
                flush=True,
            )
    direct_cps, gateway_cps = statistics.mean(rates["direct"]), statistics.mean(rates["gateway"])
    ratio = gateway_cps / direct_cps
    # Per-round ratios pair runs made moments apart, so their median resists load spikes from
    # other processes on a shared machine.
    paired = statistics.median(
        g / d for g, d in zip(rates["gateway"], rates["direct"], strict=True)
    )
    print(
        f"eval: humaneval limit={args.limit} n={args.n} max_tokens={args.max_tokens} "
        f"concurrency={args.concurrency} stream={args.stream} rounds={args.rounds}"
    )
    print(
        f"direct   {direct_cps:8.2f} candidates/s  {statistics.mean(tokens['direct']):9.1f} tok/s"
    )
    print(
        f"gateway  {gateway_cps:8.2f} candidates/s  {statistics.mean(tokens['gateway']):9.1f} tok/s"
    )
    print(
        f"ratio gateway/direct = {ratio:.3f} (of means), {paired:.3f} (median of rounds); "
        f"target >= {TARGET_RATIO}: {'OK' if paired >= TARGET_RATIO else 'BELOW'} (judged on the median)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--direct", help="base URL of a running vLLM OpenAI server")
    parser.add_argument("--gateway", help="base URL of a gateway serving the same model")
    parser.add_argument("--model", default="qwen-demo")
    parser.add_argument("--data-dir", type=Path, help="benchmark files (default: dataset cache)")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        work = Path(tmp)
        if args.direct and args.gateway:
            measure(args.direct.rstrip("/"), args.gateway.rstrip("/"), args, work)
        elif args.direct or args.gateway:
            parser.error("give both --direct and --gateway, or neither")
        else:
            with own_stack(work, args.model) as (direct, gateway):
                measure(direct, gateway, args, work)


if __name__ == "__main__":
    main()
