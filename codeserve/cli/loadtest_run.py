"""The `codeserve loadtest` run: flags -> RunSpec -> runs -> table, JSON and HTML."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from codeserve.common.errors import CliError
from codeserve.loadtest.protocol import (
    ArrivalSpec,
    LoadtestResult,
    RunResult,
    RunSpec,
    SloSpec,
    SweepPoint,
    WorkloadSpec,
)

if TYPE_CHECKING:
    from codeserve.common.settings import ApiKeySettings
    from codeserve.loadtest.runner import LoadRunner


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"] if isinstance(p, str))
    return f"{where + ': ' if where else ''}{err['msg']}"


def first_model(base_url: str, api_key: str | None, timeout: float = 10.0) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/") + "/models"
    try:
        resp = httpx.get(url, headers=headers, timeout=timeout)
        resp.raise_for_status()
        return str(resp.json()["data"][0]["id"])
    except httpx.HTTPError as exc:
        raise CliError(f"cannot list models at {url}: {exc}; pass --model") from None
    except (KeyError, IndexError, TypeError, ValueError):
        raise CliError(f"{url} did not return a model list; pass --model") from None


def spec_from_args(args: argparse.Namespace, settings: ApiKeySettings) -> RunSpec:
    if not args.base_url:
        raise CliError("--base-url is required (an OpenAI base URL such as http://127.0.0.1:8000/v1)")
    if args.concurrency is None and args.rate is None and not args.sweep:
        raise CliError("choose the traffic: --concurrency N (closed loop) or --rate R (open loop)")
    if args.duration is None and args.requests is None:
        raise CliError("choose the length: --duration SECONDS or --requests N")
    api_key = args.api_key or settings.api_key
    try:
        if args.concurrency is not None:
            arrival = ArrivalSpec(mode="closed", concurrency=args.concurrency)
        else:
            arrival = ArrivalSpec(mode=args.arrival, rate=args.rate if args.rate is not None else args.sweep_start,
                                  burstiness=args.burstiness)
        workload = WorkloadSpec(
            source=args.workload, endpoint=args.endpoint, prompt_tokens=args.prompt_tokens,
            suffix_tokens=args.suffix_tokens, fim_fraction=args.fim_fraction, n=args.n,
            max_tokens=args.max_tokens, min_tokens=args.min_tokens, ignore_eos=args.ignore_eos,
            temperature=args.temperature, max_tasks=args.max_tasks,
        )
        slo = SloSpec(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms, e2e_ms=args.slo_e2e_ms,
                      attainment=args.slo_attainment)
        model = args.model or first_model(args.base_url, api_key)
        return RunSpec(
            base_url=args.base_url, model=model, api_key=api_key, arrival=arrival, workload=workload,
            slo=slo, duration_s=args.duration, num_requests=args.requests, warmup_s=args.warmup,
            warmup_requests=args.warmup_requests, timeout_s=args.timeout,
            max_inflight=args.max_inflight, score_fraction=args.score_fraction, seed=args.seed,
        )
    except ValidationError as exc:
        raise CliError(_validation_message(exc)) from None


async def _execute(spec: RunSpec, args: argparse.Namespace) -> LoadtestResult:
    from codeserve.loadtest.sweep import auto_rates, run_once, single, sweep
    from codeserve.loadtest.workloads import build_workload

    workload = build_workload(spec.workload, spec.model, spec.seed, args.data_dir)
    current: list[LoadRunner] = []
    interrupted: list[bool] = []

    def on_interrupt() -> None:
        # First Ctrl-C: stop sending, keep what was measured. Second: give up.
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print("loadtest: stopping; waiting for requests in flight (Ctrl-C again to abort)", file=sys.stderr)
        for runner in current:
            runner.stop()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_interrupt)

    async def one(run_spec: RunSpec) -> RunResult:
        current.clear()
        return await run_once(run_spec, workload, args.save_records, current.append)

    try:
        if args.sweep:
            proposer = auto_rates(args.sweep_start, args.sweep_max, args.sweep_runs)

            def next_rate(points: list[SweepPoint]) -> float | None:
                return None if interrupted else proposer(points)

            return await sweep(spec, one, next_rate)
        return single(await one(spec))
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run_command(args: argparse.Namespace, settings: ApiKeySettings) -> int:
    from codeserve.loadtest.report import console_table, write_html, write_json
    from codeserve.loadtest.runner import connection_budget, run_with_precise_timers

    spec = spec_from_args(args, settings)
    result = run_with_precise_timers(_execute(spec, args), connection_budget(spec))
    print(console_table(result))
    if args.out:
        write_json(result, args.out)
        print(f"results: {args.out}")
    if args.html:
        write_html(result, args.html)
        print(f"HTML report: {args.html}")
    return 0
