"""`codeserve eval ...` (run an eval) and `codeserve eval compare A.json B.json`."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from codeserve.cli import flags
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
            "`codeserve eval compare A B` shows two runs (results.json or --out folders) side by side."
        ),
    )
    target = flags.add_target_flags(
        parser, model_help="model name sent in requests", timeout_s=600.0
    )
    target.add_argument("--benchmark", "-b", help="humaneval, humaneval+, mbpp, mbpp+, ...")
    target.add_argument(
        "--format",
        dest="prompt_format",
        metavar="FORMAT",
        help="prompt format (default: the benchmark's base-model format; "
        "`chat` for instruct models); see --list-formats",
    )
    target.add_argument(
        "--list-formats", action="store_true", help="print the prompt formats and exit"
    )
    target.add_argument(
        "--oracle",
        action="store_true",
        help="score the canonical solutions instead of asking an endpoint",
    )
    flags.add_limit_flag(target)
    flags.add_data_dir_flag(target)
    sampling = parser.add_argument_group("sampling")
    flags.add_candidates_flag(sampling, default=1, help="candidates per task")
    sampling.add_argument("--temperature", type=float, default=0.0)
    sampling.add_argument("--top-p", type=float, default=1.0)
    sampling.add_argument("--max-tokens", type=int, default=512)
    sampling.add_argument("--seed", type=int)
    client = parser.add_argument_group("client")
    client.add_argument("--stream", action="store_true", help="stream responses (measures TTFT)")
    client.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    client.add_argument(
        "--max-n-per-request",
        type=int,
        help="split n into requests of at most this many candidates",
    )
    client.add_argument(
        "--retries", type=int, default=5, help="retries on 429/5xx/connection errors (default 5)"
    )
    output = flags.add_output_flags(
        parser,
        help="output folder: results.json, samples.jsonl, report.md, report.html "
        "(default: eval-results/MODEL-BENCHMARK-FORMAT)",
    )
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    flags.add_log_level_flag(parser)
    parser.set_defaults(func=run_command)

    flags.add_compare_command(
        parser,
        dest="eval_command",
        help="print two runs' results side by side",
        what="run",
        given_as="its results.json or --out folder",
        func=compare_command,
    )


def compare_command(args: argparse.Namespace) -> int:
    from codeserve.client.compare import compare_files

    sys.stdout.write(compare_files(flags.results_file(args.a), flags.results_file(args.b)))
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
    print(
        f"{results.metadata.dataset_name} {results.metadata.identity.model}: {passk} "
        f"({results.metadata.tasks} tasks, n={results.metadata.n}); "
        f"results in {outcome.out_dir / 'results.json'}"
    )
    if not results.complete:
        missing = sum(results.missing_samples.values())
        first_error = next(iter(results.errors), "unknown")
        print(
            f"codeserve: warning: {missing} samples missing after "
            f"{results.throughput.failed_requests} failed requests (most common error: "
            f"{first_error}); rerun the same command to fetch them",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return 0


def build_config(args: argparse.Namespace) -> Any:
    """Validate the flags into an `EvalConfig` (every problem is a one-line CliError)."""
    from codeserve.client.eval_run import EvalConfig
    from codeserve.client.protocol import SamplingParams
    from codeserve.common.settings import ApiKeySettings
    from codeserve.datasets import benchmark_names

    if not args.benchmark:
        raise CliError("--benchmark is required (e.g. humaneval, mbpp)")
    if args.benchmark.lower() not in benchmark_names():
        raise CliError(
            f"unknown benchmark {args.benchmark!r}; choose one of: {', '.join(benchmark_names())}"
        )
    if args.oracle:
        if args.prompt_format:
            raise CliError("--format does not apply to --oracle (it scores canonical solutions)")
        model, url = args.model or "oracle", None
    else:
        if not args.base_url or not args.model:
            raise CliError("--base-url and --model are required (or --oracle)")
        flags.base_url(args.base_url)  # check it; the client normalizes it itself
        model, url = args.model, args.base_url
    flags.positive("-n", args.n)
    flags.positive("--concurrency", args.concurrency)
    flags.positive("--max-tokens", args.max_tokens)
    flags.positive("--limit", args.limit)
    flags.positive("--max-n-per-request", args.max_n_per_request)
    if not (math.isfinite(args.temperature) and 0 <= args.temperature <= 2):
        raise CliError(f"--temperature must be between 0 and 2, got {args.temperature}")
    if not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise CliError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise CliError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.retries < 0:
        raise CliError(f"--retries must be >= 0, got {args.retries}")
    data_dir = flags.data_dir(args.data_dir)
    fmt_name = "oracle" if args.oracle else (args.prompt_format or "default")
    out = flags.out_dir(
        args.out or Path("eval-results") / _slug(f"{model}-{args.benchmark}-{fmt_name}")
    )
    return EvalConfig(
        benchmark=args.benchmark,
        model=model,
        endpoint=url,
        oracle=args.oracle,
        n=args.n,
        sampling=SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            max_tokens=args.max_tokens,
            seed=args.seed,
        ),
        limit=args.limit,
        out_dir=out,
        prompt_format=args.prompt_format,
        stream=args.stream,
        concurrency=args.concurrency,
        max_n_per_request=args.max_n_per_request,
        data_dir=data_dir,
        api_key=args.api_key or ApiKeySettings().api_key,
        timeout_s=args.timeout,
        max_retries=args.retries,
        progress=not args.no_progress,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "run"


def _list_formats() -> int:
    from codeserve.scoring.prompts import describe_formats

    for name, kind, summary in describe_formats():
        print(f"{name:16} {kind:11} {summary}")
    return 0
