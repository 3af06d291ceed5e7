"""`codeserve quickstart`: the main job in one command. Serve the default models (real ones when
a hub or local weights are there, tiny demo models otherwise), score each through the gateway on a
slice of HumanEval, print pass@k beside the sampling speed, then keep serving."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx

from codeserve.common.errors import CliError
from codeserve.server.app import create_app
from codeserve.server.config import ModelsFile, Settings
from codeserve.server.shutdown import draining_server


async def _wait_ready(base: str, server_task: asyncio.Task[None], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        while time.monotonic() < deadline:
            if server_task.done():
                server_task.result()
                raise CliError("the gateway stopped before its models were ready")
            try:
                resp = await http.get("/ready")
                states = resp.json().get("models", {})
                if resp.status_code == 200:
                    return
                if any(s == "failed" for s in states.values()):
                    raise CliError(f"a model failed to start: {states}; see the log above")
                line = ", ".join(f"{k}: {v}" for k, v in states.items())
                if line != last:
                    print(f"codeserve: waiting for engines ({line})", file=sys.stderr)
                    last = line
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2)
    raise CliError(f"models not ready after {timeout_s:.0f}s; see the log above")


async def _score(
    base: str, models: ModelsFile, out_dir: Path, limit: int, n: int, data_dir: Path | None
) -> None:
    from codeserve.client.eval_run import EvalConfig, run_eval
    from codeserve.client.protocol import SamplingParams
    from codeserve.server.defaults import quickstart_eval

    rows = []
    for spec in models.models:
        prompt_format, max_tokens = quickstart_eval(spec)  # chat for instruct models
        config = EvalConfig(
            benchmark="humaneval",
            model=spec.name,
            endpoint=base + "/v1",
            n=n,
            limit=limit,
            sampling=SamplingParams(temperature=0.8, top_p=0.95, max_tokens=max_tokens),
            out_dir=out_dir / spec.name,
            stream=True,
            data_dir=data_dir,
            prompt_format=prompt_format,
        )
        outcome = await run_eval(config)
        r = outcome.results
        rows.append((spec.name, r.pass_at_k, r.throughput, r.latency.ttft_s.p50, outcome.out_dir))
    print(
        "\ncodeserve: HumanEval slice scored through the gateway "
        f"({limit} tasks x {n} candidates per model)"
    )
    for name, passk, throughput, ttft, path in rows:
        ks = "  ".join(f"{k} {v:.3f}" for k, v in passk.items()) or "pass@k n/a"
        cps = throughput.candidates_per_s
        speed = f"{cps:.1f} candidates/s" if cps else "candidates/s n/a"
        first = f"TTFT p50 {ttft * 1000:.0f} ms" if ttft is not None else "TTFT n/a"
        failed = (
            f"  ({throughput.failed_requests} failed requests: see the report)"
            if throughput.failed_requests
            else ""
        )
        print(f"  {name:<18} {ks}  {speed}  {first}  -> {path}{failed}")


async def run_quickstart(
    settings: Settings,
    models: ModelsFile,
    *,
    limit: int,
    n: int,
    out_dir: Path,
    keep_serving: bool,
    data_dir: Path | None,
) -> int:
    app = create_app(settings, models)
    # As `codeserve serve`: the first Ctrl-C drains (readiness fails, new requests get 503,
    # those in flight finish within the grace period), a second one stops at once.
    server = draining_server(
        app,
        app.state.drain,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        grace_s=settings.shutdown_grace_s,
    )
    task = asyncio.create_task(server.serve())
    base = f"http://{settings.host}:{settings.port}"
    try:
        await _wait_ready(base, task, settings.startup_timeout_s)
        print(
            f"codeserve: serving {', '.join(m.name for m in models.models)} at {base}/v1",
            file=sys.stderr,
        )
        await _score(base, models, out_dir, limit, n, data_dir)
        if keep_serving:
            print(f"\ncodeserve: still serving at {base}/v1 (Ctrl-C to stop)")
            await task
    finally:
        server.should_exit = True
        await task
    return 0


def quickstart(
    settings: Settings,
    models: ModelsFile,
    *,
    limit: int,
    n: int,
    out_dir: Path,
    keep_serving: bool,
    data_dir: Path | None,
) -> int:
    return asyncio.run(
        run_quickstart(
            settings,
            models,
            limit=limit,
            n=n,
            out_dir=out_dir,
            keep_serving=keep_serving,
            data_dir=data_dir,
        )
    )
