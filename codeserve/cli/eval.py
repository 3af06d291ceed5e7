"""`codeserve eval ...` (run an eval) and `codeserve eval compare A.json B.json`."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from codeserve.common.errors import CliError

EXIT_INCOMPLETE = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a model on a code benchmark through any OpenAI-compatible endpoint",
        description=(
            "Ask an OpenAI-compatible endpoint for n candidates per task, score them in the "
            "sandbox and write results.json, samples.jsonl, report.md and report.html to --out. "
            "Rerunning the same command resumes: saved candidates are not requested again. "
            "`codeserve eval compare A.json B.json` shows two results side by side."
        ),
    )
    target = parser.add_argument_group("what to evaluate")
    target.add_argument("--endpoint", help="OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    target.add_argument("--model", help="model name sent in requests")
    target.add_argument("--benchmark", "-b", help="humaneval, humaneval+, mbpp, mbpp+, ...")
    target.add_argument("--format", dest="prompt_format", metavar="FORMAT",
                        help="prompt format (default: the benchmark's base-model format; "
                             "`chat` for instruct models); see --list-formats")
    target.add_argument("--list-formats", action="store_true",
                        help="print the prompt formats and exit")
    target.add_argument("--oracle", action="store_true",
                        help="score the canonical solutions instead of asking an endpoint")
    target.add_argument("--limit", type=int, help="only the first K tasks")
    target.add_argument("--data-dir", type=Path, help="folder holding the benchmark files")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("-n", type=int, default=1, help="candidates per task (default 1)")
    sampling.add_argument("--temperature", type=float, default=0.0)
    sampling.add_argument("--top-p", type=float, default=1.0)
    sampling.add_argument("--max-tokens", type=int, default=512)
    sampling.add_argument("--seed", type=int)
    client = parser.add_argument_group("client")
    client.add_argument("--stream", action="store_true", help="stream responses (measures TTFT)")
    client.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    client.add_argument("--max-n-per-request", type=int,
                        help="split n into requests of at most this many candidates")
    client.add_argument("--api-key", help="default: $CODESERVE_API_KEY or $OPENAI_API_KEY")
    client.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    client.add_argument("--retries", type=int, default=5,
                        help="retries on 429/5xx/connection errors (default 5)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path,
                        help="output folder (default: eval-results/MODEL-BENCHMARK-FORMAT)")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_command)

    nested = parser.add_subparsers(dest="eval_command", metavar="{compare}")
    compare = nested.add_parser("compare", help="print two results.json side by side")
    compare.add_argument("a", type=Path, help="results.json of run A")
    compare.add_argument("b", type=Path, help="results.json of run B")
    compare.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    from codeserve.client.compare import compare_files

    sys.stdout.write(compare_files(args.a, args.b))
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.list_formats:
        return _list_formats()
    import asyncio

    from codeserve.client.eval_run import run_eval

    config = build_config(args)
    outcome = asyncio.run(run_eval(config))
    results = outcome.results
    passk = ", ".join(f"{k} {100 * v:.1f}%" for k, v in results.pass_at_k.items()) or "no pass@k"
    print(f"{results.metadata.dataset_name} {results.metadata.identity.model}: {passk} "
          f"({results.metadata.tasks} tasks, n={results.metadata.n}); "
          f"results in {outcome.out_dir / 'results.json'}")
    if not results.complete:
        missing = sum(results.missing_samples.values())
        first_error = next(iter(results.errors), "unknown")
        print(f"codeserve: warning: {missing} samples missing after "
              f"{results.throughput.failed_requests} failed requests (most common error: "
              f"{first_error}); rerun the same command to fetch them", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def build_config(args: argparse.Namespace) -> Any:
    """Validate the flags into an `EvalConfig` (every problem is a one-line CliError)."""
    from codeserve.client.endpoint import normalize_base_url
    from codeserve.client.eval_run import EvalConfig
    from codeserve.client.protocol import SamplingParams
    from codeserve.common.settings import ApiKeySettings
    from codeserve.datasets import benchmark_names

    if not args.benchmark:
        raise CliError("--benchmark is required (e.g. humaneval, mbpp)")
    if args.benchmark.lower() not in benchmark_names():
        raise CliError(f"unknown benchmark {args.benchmark!r}; choose one of: "
                       f"{', '.join(benchmark_names())}")
    if args.oracle:
        if args.prompt_format:
            raise CliError("--format does not apply to --oracle (it scores canonical solutions)")
        model = args.model or "oracle"
    else:
        if not args.endpoint or not args.model:
            raise CliError("--endpoint and --model are required (or --oracle)")
        normalize_base_url(args.endpoint)
        model = args.model
    _check_positive("-n", args.n)
    _check_positive("--concurrency", args.concurrency)
    _check_positive("--max-tokens", args.max_tokens)
    for flag, value in (("--limit", args.limit), ("--max-n-per-request", args.max_n_per_request)):
        if value is not None:
            _check_positive(flag, value)
    if not (math.isfinite(args.temperature) and 0 <= args.temperature <= 2):
        raise CliError(f"--temperature must be between 0 and 2, got {args.temperature}")
    if not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise CliError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise CliError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.retries < 0:
        raise CliError(f"--retries must be >= 0, got {args.retries}")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise CliError(f"--data-dir {args.data_dir} is not a directory")
    fmt_name = "oracle" if args.oracle else (args.prompt_format or "default")
    out = args.out or Path("eval-results") / _slug(f"{model}-{args.benchmark}-{fmt_name}")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a directory")
    return EvalConfig(
        benchmark=args.benchmark,
        model=model,
        endpoint=None if args.oracle else args.endpoint,
        oracle=args.oracle,
        n=args.n,
        sampling=SamplingParams(temperature=args.temperature, top_p=args.top_p,
                                max_tokens=args.max_tokens, seed=args.seed),
        limit=args.limit,
        out_dir=out,
        prompt_format=args.prompt_format,
        stream=args.stream,
        concurrency=args.concurrency,
        max_n_per_request=args.max_n_per_request,
        data_dir=args.data_dir,
        api_key=args.api_key or ApiKeySettings().api_key,
        timeout_s=args.timeout,
        max_retries=args.retries,
        progress=not args.no_progress,
    )


def _check_positive(flag: str, value: int) -> None:
    if value < 1:
        raise CliError(f"{flag} must be a positive integer, got {value}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "run"


def _list_formats() -> int:
    from codeserve.scoring.prompts import describe_formats

    for name, kind, summary in describe_formats():
        print(f"{name:16} {kind:11} {summary}")
    return 0
