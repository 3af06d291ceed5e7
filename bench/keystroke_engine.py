"""Keystroke traffic (codeserve.loadtest.keystroke) against one managed vLLM engine, once per
engine setting, to choose the engine defaults that help IDE completion latency.

    python -m bench.keystroke_engine [--model DIR] [--users 2] [--duration 60]

Each variant starts `codeserve serve` with the model and the variant's extra vLLM flags, warms
it up, runs the keystroke workload, and reads the engine's own counters around the run: tokens
it generated (so the waste includes what was generated after a cancel, until the abort), prefix
cache hits, and accepted speculative tokens. The model is the real Qwen2.5-Coder-0.5B when it is
in the cache (`~/.cache/codeserve/models`), else a demo model. `uptime`'s load average is
printed beside each run: the figures depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from codeserve.loadtest.keystroke import KeystrokeSpec, run_keystroke

VARIANTS = {
    "no prefix cache": ["--no-enable-prefix-caching"],
    "prefix cache (vLLM default)": ["--enable-prefix-caching"],
    "prefix cache + n-gram spec": [
        "--enable-prefix-caching",
        "--speculative-config",
        '{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4, '
        '"prompt_lookup_min": 2}',
    ],
}


def real_model_dir() -> Path | None:
    root = Path(os.environ.get("CODESERVE_CACHE_DIR", Path.home() / ".cache" / "codeserve"))
    found = sorted((root / "models").glob("qwen2.5-coder-0.5b*/config.json"))
    return found[0].parent if found else None


def counters(url: str) -> dict[str, float]:
    wanted = (
        "vllm:generation_tokens_total",
        "vllm:prompt_tokens_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        "vllm:spec_decode_num_accepted_tokens_total",
        "vllm:spec_decode_num_draft_tokens_total",
    )
    out = dict.fromkeys(wanted, 0.0)
    for line in httpx.get(url + "/metrics", timeout=60).text.splitlines():
        for name in wanted:
            if line.startswith(name + "{") or line.startswith(name + " "):
                out[name] += float(line.rsplit(" ", 1)[1])
    return out


def serve(
    model: Path, extra: list[str], root: Path, port: int, engine_port: int
) -> subprocess.Popen[bytes]:
    engine = {
        "kind": "managed",
        "dtype": "bfloat16",
        "max_model_len": 4096,
        "max_num_seqs": 16,
        "port": engine_port,
        "extra_args": extra,
        "env": {"VLLM_CPU_KVCACHE_SPACE": "2"},
    }
    (root / "models.yaml").write_text(
        yaml.safe_dump({"models": [{"name": "coder", "model": str(model), "engine": engine}]})
    )
    log = (root / "gateway.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codeserve.cli.main",
            "serve",
            "--models-file",
            str(root / "models.yaml"),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


async def measure(
    name: str, extra: list[str], model: Path, users: int, duration: float, data_dir: Path | None
) -> str:
    port, engine_port = 18931, 18932
    with tempfile.TemporaryDirectory() as tmp:
        proc = serve(model, extra, Path(tmp), port, engine_port)
        url, engine_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{engine_port}"
        try:
            deadline = time.monotonic() + 1200
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    tail = (Path(tmp) / "gateway.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"{name}: gateway exited:\n{tail}")
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(2)
            spec = KeystrokeSpec(
                base_url=url + "/v1",
                model="coder",
                users=users,
                duration_s=duration,
                max_tokens=24,
                temperature=0.0,
            )
            await run_keystroke(spec.model_copy(update={"duration_s": 10.0}), data_dir)  # warm
            before = counters(engine_url)
            result = await run_keystroke(spec, data_dir)
            after = counters(engine_url)
        finally:
            proc.terminate()
            proc.wait(120)
    s = result.summary
    delta = {k: after[k] - before[k] for k in after}
    engine_waste = delta["vllm:generation_tokens_total"] - s.tokens_completed
    hits = delta["vllm:prefix_cache_hits_total"]
    queries = delta["vllm:prefix_cache_queries_total"] or 1
    drafts = delta["vllm:spec_decode_num_draft_tokens_total"]
    accepted = delta["vllm:spec_decode_num_accepted_tokens_total"]
    load = os.getloadavg()
    return (
        f"| {name} | {s.requests} | {s.cancelled_share:.0%} | {s.ttft_ms.p50 or 0:.0f} | "
        f"{s.ttft_ms.p99 or 0:.0f} | {s.e2e_ms.p50 or 0:.0f} | {s.tokens_wasted} | "
        f"{engine_waste:.0f} / {delta['vllm:generation_tokens_total']:.0f} | "
        f"{delta['vllm:prompt_tokens_total']:.0f} | {hits / queries:.0%} | "
        f"{(f'{accepted / drafts:.0%}' if drafts else '-')} | "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    model = args.model or real_model_dir()
    if model is None:
        raise SystemExit("no model: pass --model DIR (a demo model: codeserve demo-model DIR)")
    print(f"model {model}, {args.users} users, {args.duration:.0f} s each")
    print(
        "| engine | requests | cancelled | TTFT p50 ms | TTFT p99 ms | E2E p50 ms | "
        "tokens to cancelled (client) | engine waste / generated | prompt tokens | "
        "prefix hits | "
        "spec accepted | load 1/5/15 min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.variants:
        print(
            asyncio.run(
                measure(name, VARIANTS[name], model, args.users, args.duration, args.data_dir)
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
