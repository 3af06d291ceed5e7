"""The `codeserve loadtest` run: flags -> RunSpec -> runs -> table, results.json and report.html."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from codeserve.cli import flags
from codeserve.common.errors import CliError, validation_message
from codeserve.datasets import benchmark_names
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


# The spec field each flag fills, so a validation error names the flag the user typed.
_FLAG_OF_FIELD = {
    "concurrency": "--concurrency",
    "rate": "--rate",
    "burstiness": "--burstiness",
    "prompt_tokens": "--prompt-tokens",
    "suffix_tokens": "--suffix-tokens",
    "fim_fraction": "--fim-fraction",
    "n": "-n",
    "max_tokens": "--max-tokens",
    "min_tokens": "--min-tokens",
    "temperature": "--temperature",
    "max_tasks": "--limit",
    "ttft_ms": "--slo-ttft-ms",
    "tpot_ms": "--slo-tpot-ms",
    "e2e_ms": "--slo-e2e-ms",
    "attainment": "--slo-attainment",
    "duration_s": "--duration",
    "num_requests": "--requests",
    "warmup_s": "--warmup",
    "warmup_requests": "--warmup-requests",
    "timeout_s": "--timeout",
    "max_inflight": "--max-inflight",
    "score_fraction": "--score-fraction",
    "users": "--concurrency",  # keystroke
}


def _flag_message(exc: ValidationError) -> str:
    message = validation_message(exc)
    field, _, problem = message.partition(": ")
    return f"{_FLAG_OF_FIELD[field]}: {problem}" if field in _FLAG_OF_FIELD else message


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


def check_model(base_url: str, model: str, api_key: str | None) -> None:
    """Fail before the run, as `eval` does, on an unreachable endpoint, a refused key or a model
    it does not serve (every request would fail)."""
    from codeserve.client.endpoint import EndpointClient, EndpointConfig

    async def check() -> None:
        config = EndpointConfig(base_url=base_url, model=model, api_key=api_key)
        async with EndpointClient(config) as client:
            await client.check_model()

    asyncio.run(check())


def output_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """Where results.json and report.html go: into the --out folder; the old `--out FILE.json`
    and `--html FILE` still name the files themselves."""
    out, html = args.out, getattr(args, "html", None)
    if out is not None and out.suffix == ".json" and not out.is_dir():
        flags.deprecated("--out FILE.json", "--out DIR (writes DIR/results.json)")
        return out, html
    if out is None:
        return None, html
    flags.out_dir(out)
    return out / flags.RESULTS_FILE, html or out / flags.REPORT_FILE


def write_outputs(result: LoadtestResult, json_path: Path | None, html_path: Path | None) -> None:
    from codeserve.loadtest.report import write_html, write_json

    if json_path is not None:
        write_json(result, json_path)
        print(f"results: {json_path}")
    if html_path is not None:
        write_html(result, html_path)
        print(f"HTML report: {html_path}")


def spec_from_args(args: argparse.Namespace, settings: ApiKeySettings) -> RunSpec:
    if not args.base_url:
        raise CliError(
            "--base-url is required (an OpenAI-compatible base URL such as "
            "http://127.0.0.1:8000/v1)"
        )
    if args.concurrency is None and args.rate is None and not args.sweep:
        raise CliError("choose the traffic: --concurrency N (closed loop) or --rate R (open loop)")
    if args.duration is None and args.requests is None:
        raise CliError("choose the length: --duration SECONDS or --requests N")
    base_url = flags.base_url(args.base_url)
    if args.workload != "synthetic" and args.workload.lower() not in benchmark_names():
        raise CliError(
            f"unknown --workload {args.workload!r}; choose synthetic, keystroke or a "
            f"benchmark: {', '.join(benchmark_names())}"
        )
    if args.fim_fraction > 0 and args.api == "chat":
        raise CliError("--fim-fraction needs --api completions (a chat request has no suffix)")
    if args.limit is not None and args.workload == "synthetic":
        raise CliError("--limit applies to a benchmark workload (--workload humaneval, ...)")
    flags.data_dir(args.data_dir)
    api_key = args.api_key or settings.api_key
    try:
        if args.concurrency is not None:
            arrival = ArrivalSpec(mode="closed", concurrency=args.concurrency)
        else:
            arrival = ArrivalSpec(
                mode=args.arrival,
                rate=args.rate if args.rate is not None else args.sweep_start,
                burstiness=args.burstiness,
            )
        workload = WorkloadSpec(
            source=args.workload,
            endpoint=args.api,
            prompt_tokens=args.prompt_tokens,
            suffix_tokens=args.suffix_tokens,
            fim_fraction=args.fim_fraction,
            n=args.n,
            max_tokens=args.max_tokens,
            min_tokens=args.min_tokens,
            ignore_eos=args.ignore_eos,
            temperature=args.temperature,
            max_tasks=args.limit,
        )
        slo = SloSpec(
            ttft_ms=args.slo_ttft_ms,
            tpot_ms=args.slo_tpot_ms,
            e2e_ms=args.slo_e2e_ms,
            attainment=args.slo_attainment,
        )
        # Every flag is checked before the endpoint is asked anything, so the model may be
        # still unknown here (the first one /v1/models lists, filled in below).
        spec = RunSpec(
            base_url=base_url,
            model=args.model or "",
            api_key=api_key,
            arrival=arrival,
            workload=workload,
            slo=slo,
            duration_s=args.duration,
            num_requests=args.requests,
            warmup_s=args.warmup,
            warmup_requests=args.warmup_requests,
            timeout_s=args.timeout,
            max_inflight=args.max_inflight,
            score_fraction=args.score_fraction,
            seed=args.seed,
        )
    except ValidationError as exc:
        raise CliError(_flag_message(exc)) from None
    if args.sweep and not slo.any:  # checked again by the sweep; here before any request
        raise CliError(
            "--sweep needs an SLO to search for: --slo-ttft-ms, --slo-tpot-ms or --slo-e2e-ms"
        )
    if args.model:
        check_model(base_url, args.model, api_key)
        return spec
    return spec.model_copy(update={"model": first_model(base_url, api_key)})


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
        print(
            "loadtest: stopping; waiting for requests in flight (Ctrl-C again to abort)",
            file=sys.stderr,
        )
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
    from codeserve.loadtest.report import console_table
    from codeserve.loadtest.runner import connection_budget, run_with_precise_timers

    json_path, html_path = output_paths(args)
    spec = spec_from_args(args, settings)
    result = run_with_precise_timers(_execute(spec, args), connection_budget(spec))
    print(console_table(result))
    write_outputs(result, json_path, html_path)
    summary = result.run.summary
    if summary.requests_ok == 0 and summary.errors:
        kind, count = max(summary.errors.items(), key=lambda item: item[1])
        example = summary.error_examples.get(kind, "")
        raise CliError(
            f"no request succeeded ({count} x {kind}{': ' + example if example else ''})",
            exit_code=1,
        )
    return 0


def run_keystroke_command(args: argparse.Namespace, settings: ApiKeySettings) -> int:
    """IDE keystroke traffic (codeserve.loadtest.keystroke): --concurrency users typing for
    --duration seconds; --out DIR gets keystroke.json."""
    from codeserve.loadtest.keystroke import KeystrokeSpec, render, run_keystroke

    if not args.base_url:
        raise CliError(
            "--base-url is required (an OpenAI-compatible base URL such as "
            "http://127.0.0.1:8000/v1)"
        )
    if args.rate is not None or args.requests is not None or args.sweep:
        raise CliError(
            "--workload keystroke runs --concurrency users for --duration seconds "
            "(no --rate, --requests or --sweep)"
        )
    base, key = flags.base_url(args.base_url), args.api_key or settings.api_key
    flags.data_dir(args.data_dir)
    out = flags.out_dir(args.out) if args.out is not None else None
    try:
        spec = KeystrokeSpec(
            base_url=base,
            model=args.model or "",
            api_key=key,
            users=4 if args.concurrency is None else args.concurrency,
            duration_s=60.0 if args.duration is None else args.duration,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            timeout_s=args.timeout,
            seed=args.seed,
        )
    except ValidationError as exc:
        raise CliError(_flag_message(exc)) from None
    if args.model:
        check_model(base, args.model, key)
    else:
        spec = spec.model_copy(update={"model": first_model(base, key)})
    result = asyncio.run(run_keystroke(spec, args.data_dir))
    print(render(result))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "keystroke.json").write_text(result.model_dump_json(indent=2))
        print(f"results: {out / 'keystroke.json'}")
    return 0
