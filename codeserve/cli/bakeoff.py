"""`codeserve bakeoff ...` (compare models by pass@k and sampling speed) and
`codeserve bakeoff compare A B` (two bake-offs side by side)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from codeserve.cli import flags
from codeserve.common.errors import CliError

EXIT_INCOMPLETE = 1
STYLES = ("auto", "base", "chat")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bakeoff",
        help="which code model to deploy: pass@k and sampling speed of several models",
        description=(
            "Score every model of one endpoint (or the --model ones, or those of several "
            "--base-url endpoints, or of a --targets file) on the same benchmarks with the same "
            "prompts, stops, sanitizer and sandbox: a greedy candidate per task (pass@1, TTFT) "
            "and -n sampled ones (pass@k, candidates/s, tokens/s, time for n candidates, solved "
            "tasks per minute), one model at a time under the same load. Writes bakeoff.json, "
            "leaderboard.md and report.html to --out, with each model's published pass@1 beside "
            "ours and big gaps flagged with per-task evidence. Each model's runs are `codeserve "
            "eval` folders under --out/runs: rerunning the same command resumes them. "
            "`codeserve bakeoff compare A B` shows two bake-offs side by side."
        ),
    )
    target = flags.add_target_flags(
        parser,
        model_help="a model to compare (repeat; default: every model the endpoints serve)",
        timeout_s=600.0,
        repeatable=True,
    )
    target.add_argument(
        "--targets",
        type=Path,
        metavar="FILE",
        help="YAML list of targets: {base_url, model, label?, format?, fim?, "
        "published?, api_key_env?} (instead of --base-url/--model)",
    )
    bench = parser.add_argument_group("benchmarks and prompts")
    bench.add_argument(
        "--benchmark",
        "-b",
        action="append",
        metavar="NAME",
        help="repeat or comma-separate (default humaneval+,mbpp+); infilling "
        "sets (humaneval-infill-*) run for FIM-capable models only",
    )
    flags.add_limit_flag(bench, help="only the first K tasks of each benchmark")
    flags.add_data_dir_flag(bench)
    bench.add_argument(
        "--format",
        dest="styles",
        action="append",
        default=[],
        metavar="[MODEL=]STYLE",
        help="prompt style: auto (default: chat for Instruct/chat names), base or "
        "chat; for every model or MODEL=STYLE for one (repeat)",
    )
    bench.add_argument(
        "--published",
        dest="published",
        action="append",
        default=[],
        metavar="[MODEL=]KEY",
        help="which published row to hold a model against (default: matched by "
        "name), or none; see --list-published",
    )
    bench.add_argument(
        "--list-published",
        action="store_true",
        help="print the published reference scores and exit",
    )
    bench.add_argument(
        "--gap-threshold",
        type=float,
        default=5.0,
        metavar="PP",
        help="flag pass@1 more than PP points under the published one (default 5)",
    )
    sampling = parser.add_argument_group("sampling")
    flags.add_candidates_flag(
        sampling, default=10, help="sampled candidates per task; 0: greedy only"
    )
    sampling.add_argument(
        "--temperature", type=float, default=0.8, help="for the sampled candidates (default 0.8)"
    )
    sampling.add_argument("--top-p", type=float, default=0.95, help="(default 0.95)")
    sampling.add_argument("--max-tokens", type=int, default=512, help="(default 512)")
    sampling.add_argument("--seed", type=int)
    sampling.add_argument(
        "--no-greedy",
        action="store_true",
        help="no greedy candidate (pass@1 then comes from the sampled ones)",
    )
    budget = parser.add_argument_group("budget (the tasks every model gets)")
    budget.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="e.g. 20m: run in rounds of 5, 10, 20... tasks while the next round "
        "is expected to fit",
    )
    budget.add_argument(
        "--max-candidates",
        type=int,
        metavar="N",
        help="candidates per model over all benchmarks (sets the tasks each gets)",
    )
    client = parser.add_argument_group("load")
    client.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="requests in flight, each for one task's candidates (default 4)",
    )
    client.add_argument(
        "--max-n-per-request",
        type=int,
        help="split a task's candidates into requests of at most this many",
    )
    client.add_argument(
        "--retries", type=int, default=5, help="retries on 429/5xx/connection errors (default 5)"
    )
    client.add_argument("--no-stream", action="store_true", help="do not stream (no TTFT)")
    client.add_argument(
        "--no-warmup", action="store_true", help="no untimed warm-up request per model"
    )
    output = flags.add_output_flags(
        parser,
        default=Path("bakeoff-results"),
        help="output folder: bakeoff.json, leaderboard.md, report.html, runs/ "
        "(default bakeoff-results)",
    )
    output.add_argument("--no-progress", action="store_true", help="no progress bars")
    flags.add_log_level_flag(parser)
    parser.set_defaults(func=run_command)

    flags.add_compare_command(
        parser,
        dest="bakeoff_command",
        help="print two bake-offs side by side",
        what="bake-off",
        given_as="its --out folder or bakeoff.json",
        func=compare_command,
    )


def compare_command(args: argparse.Namespace) -> int:
    from codeserve.client.bakeoff.compare import compare_paths

    sys.stdout.write(compare_paths(args.a, args.b))
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.list_published:
        return _list_published()
    import asyncio

    from codeserve.client.bakeoff.report import render_console
    from codeserve.client.bakeoff.run import run_bakeoff

    config = build_config(args)
    outcome = asyncio.run(run_bakeoff(config))
    sys.stdout.write(render_console(outcome.results, outcome.out_dir))
    if not outcome.results.complete or outcome.errors:
        print(
            "codeserve: warning: some runs are incomplete (see the Runs table); rerun the same "
            "command to continue them",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return 0


def build_config(args: argparse.Namespace) -> Any:
    """Validate the flags into a `BakeoffConfig` (every problem is one CliError line)."""
    from codeserve.client.bakeoff.plan import (
        DEFAULT_BENCHMARKS,
        TargetSpec,
        load_targets_file,
        parse_assignments,
        parse_duration,
        task_cap,
    )
    from codeserve.client.bakeoff.published import published_keys
    from codeserve.client.bakeoff.results import Settings
    from codeserve.client.bakeoff.run import BakeoffConfig
    from codeserve.common.settings import ApiKeySettings
    from codeserve.datasets import benchmark_names

    urls, models = args.base_url or [], args.model or []
    if args.targets is not None:
        if urls or models:
            raise CliError("--targets replaces --base-url and --model; give one or the other")
        specs = load_targets_file(args.targets)
        only: list[str] = []
    else:
        if not urls:
            raise CliError(
                "--base-url is required (repeat it for several endpoints), or --targets FILE"
            )
        for url in urls:
            flags.base_url(url)
        if len(urls) == 1:
            specs = [TargetSpec(base_url=urls[0], model=m) for m in dict.fromkeys(models)] or [
                TargetSpec(base_url=urls[0])
            ]
            only = []
        else:
            specs = [TargetSpec(base_url=u) for u in dict.fromkeys(urls)]
            only = list(dict.fromkeys(models))
    benchmarks = _benchmarks(args.benchmark or list(DEFAULT_BENCHMARKS), benchmark_names())
    styles = parse_assignments(args.styles, "--format", STYLES)
    published = parse_assignments(args.published, "--published", [*published_keys(), "none"])
    if args.n < 0:
        raise CliError(f"-n must be 0 (greedy only) or more, got {args.n}")
    if args.n == 0 and args.no_greedy:
        raise CliError("-n 0 with --no-greedy leaves nothing to sample")
    for flag, value in (
        ("--concurrency", args.concurrency),
        ("--max-tokens", args.max_tokens),
        ("--limit", args.limit),
        ("--max-n-per-request", args.max_n_per_request),
        ("--max-candidates", args.max_candidates),
    ):
        flags.positive(flag, value)
    if not (math.isfinite(args.temperature) and 0 <= args.temperature <= 2):
        raise CliError(f"--temperature must be between 0 and 2, got {args.temperature}")
    if not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise CliError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise CliError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if not (math.isfinite(args.gap_threshold) and args.gap_threshold >= 0):
        raise CliError(f"--gap-threshold must be >= 0 points, got {args.gap_threshold}")
    if args.retries < 0:
        raise CliError(f"--retries must be >= 0, got {args.retries}")
    budget_s = parse_duration(args.time_budget) if args.time_budget is not None else None
    greedy = not args.no_greedy
    settings = Settings(
        benchmarks=benchmarks,
        n=args.n,
        greedy=greedy,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        concurrency=args.concurrency,
        max_n_per_request=args.max_n_per_request,
        stream=not args.no_stream,
        task_cap=task_cap(args.limit, args.max_candidates, args.n, greedy, len(benchmarks)),
        time_budget_s=budget_s,
        max_candidates=args.max_candidates,
        gap_threshold_pp=args.gap_threshold,
        warmup=not args.no_warmup,
    )
    return BakeoffConfig(
        specs=specs,
        settings=settings,
        out_dir=flags.out_dir(args.out),
        styles=styles,
        published=published,
        data_dir=flags.data_dir(args.data_dir),
        api_key=args.api_key or ApiKeySettings().api_key,
        timeout_s=args.timeout,
        retries=args.retries,
        progress=not args.no_progress,
        only=only,
    )


def _benchmarks(values: list[str], known: list[str]) -> list[str]:
    names = [part.strip().lower() for value in values for part in value.split(",") if part.strip()]
    for name in names:
        if name not in known:
            raise CliError(f"unknown benchmark {name!r}; choose one of: {', '.join(known)}")
    if not names:
        raise CliError("--benchmark names no benchmark")
    return list(dict.fromkeys(names))


def _list_published() -> int:
    from codeserve.client.bakeoff.published import COLUMNS, PUBLISHED

    print(f"{'key':30} {'  '.join(f'{c:>10}' for c in COLUMNS.values())}  source")
    for row in PUBLISHED:
        cells = "  ".join(
            f"{row.scores[c]:>10.1f}" if c in row.scores else f"{'-':>10}" for c in COLUMNS
        )
        print(f"{row.key:30} {cells}  {row.source}")
    return 0
