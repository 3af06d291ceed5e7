"""`codeserve loadtest`: run load against an OpenAI-compatible endpoint, or compare/re-render
results.

    codeserve loadtest --base-url http://127.0.0.1:8000/v1 --rate 5 --duration 30 --out runs/lt
    codeserve loadtest --base-url ... --concurrency 8 --requests 200 -n 4
    codeserve loadtest --base-url ... --sweep --slo-ttft-ms 500 --duration 20
    codeserve loadtest compare runs/before runs/after [--threshold 10]
    codeserve loadtest report runs/lt [--out runs/lt-again]

--out DIR gets results.json and report.html; compare and report take a results.json or the
folder holding it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codeserve.cli import flags

APIS = ("completions", "chat")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    flags.add_target_flags(
        p,
        model_help="model name (default: the first one /v1/models lists)",
        timeout_s=300.0,
        apis=APIS,
    )

    traffic = p.add_argument_group("traffic")
    shape = traffic.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, help="closed loop with this many users")
    shape.add_argument("--rate", type=float, help="open loop, requests per second")
    traffic.add_argument(
        "--arrival",
        choices=("poisson", "constant"),
        default="poisson",
        help="open-loop arrivals (default poisson)",
    )
    traffic.add_argument(
        "--burstiness",
        type=float,
        default=1.0,
        help="gamma shape of the gaps: 1 Poisson, <1 burstier",
    )
    length = traffic.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help="seconds of measured load")
    length.add_argument("--requests", type=int, help="number of measured requests")
    traffic.add_argument(
        "--warmup", type=float, default=0.0, help="seconds of unmeasured load first"
    )
    traffic.add_argument("--warmup-requests", type=int, default=0, help="unmeasured requests first")
    traffic.add_argument(
        "--max-inflight", type=int, default=512, help="open loop: cap on requests in flight"
    )
    traffic.add_argument("--seed", type=int, default=0)

    work = p.add_argument_group("workload")
    work.add_argument(
        "--workload",
        default="synthetic",
        help="'synthetic', a benchmark name (humaneval, mbpp+, ...) or 'keystroke' "
        "(IDE typing: --concurrency users, cancelled FIM requests)",
    )
    flags.add_limit_flag(
        work, help="benchmark workload: only its first K tasks", aliases=("--tasks",)
    )
    flags.add_data_dir_flag(work)
    work.add_argument("--prompt-tokens", type=int, default=128, help="synthetic prompt length")
    work.add_argument("--suffix-tokens", type=int, default=64, help="synthetic FIM suffix length")
    work.add_argument(
        "--fim-fraction", type=float, default=0.0, help="share of requests with a suffix"
    )
    flags.add_candidates_flag(work, default=1, help="candidates per request, 1-100")
    work.add_argument("--max-tokens", type=int, default=64)
    work.add_argument("--min-tokens", type=int)
    work.add_argument("--ignore-eos", action="store_true")
    work.add_argument("--temperature", type=float)

    slo = p.add_argument_group("SLOs, sweep, correctness")
    slo.add_argument("--slo-ttft-ms", type=float)
    slo.add_argument("--slo-tpot-ms", type=float)
    slo.add_argument("--slo-e2e-ms", type=float)
    slo.add_argument(
        "--slo-attainment", type=float, default=0.9, help="share of requests that must meet them"
    )
    slo.add_argument(
        "--sweep", action="store_true", help="find the highest open-loop rate meeting the SLOs"
    )
    slo.add_argument("--sweep-start", type=float, default=1.0, help="first rate of the sweep")
    slo.add_argument("--sweep-max", type=float, default=1000.0, help="highest rate tried")
    slo.add_argument("--sweep-runs", type=int, default=8, help="runs at most")
    slo.add_argument(
        "--score-fraction",
        type=float,
        default=0.0,
        help="share of requests whose candidates are scored",
    )

    out = flags.add_output_flags(
        p, help="output folder: results.json and report.html (default: print the table only)"
    )
    out.add_argument(
        "--save-records", action="store_true", help="include every request's record in results.json"
    )
    _add_html_alias(out)
    flags.add_log_level_flag(p)


def _add_html_alias(group: Any) -> None:
    # The old `--html FILE`: hidden, still writes the HTML report to FILE.
    flags.add_alias(
        group, "--html", dest="html", new="--out DIR (writes DIR/report.html)", type=Path
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "loadtest",
        help="load-test an OpenAI-compatible endpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_flags(p)
    p.set_defaults(func=_run)
    sub = p.add_subparsers(dest="loadtest_command", metavar="{compare,report}")
    cmp_p = sub.add_parser("compare", help="compare two results")
    cmp_p.add_argument("a", type=Path, help="run A: its results.json or --out folder")
    cmp_p.add_argument("b", type=Path, help="run B: its results.json or --out folder")
    cmp_p.add_argument(
        "--threshold", type=float, help="exit 1 when a figure got worse by more than this %%"
    )
    flags.add_log_level_flag(cmp_p)
    cmp_p.set_defaults(func=_compare)
    rep_p = sub.add_parser(
        "report", help="print a results file and optionally render its HTML report"
    )
    rep_p.add_argument("result", type=Path, help="a results.json or the --out folder holding it")
    out = flags.add_output_flags(rep_p, help="write report.html into this folder")
    _add_html_alias(out)
    flags.add_log_level_flag(rep_p)
    rep_p.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from codeserve.cli.loadtest_run import run_command, run_keystroke_command
    from codeserve.common.settings import ApiKeySettings

    if args.workload == "keystroke":
        return run_keystroke_command(args, ApiKeySettings())
    return run_command(args, ApiKeySettings())


def _compare(args: argparse.Namespace) -> int:
    from codeserve.loadtest.compare import compare, render
    from codeserve.loadtest.report import read_json

    a, b = flags.results_file(args.a), flags.results_file(args.b)
    rows = compare(read_json(a), read_json(b))
    print(render(rows, _label(a), _label(b), args.threshold))
    if args.threshold is not None and any(r.worse_by(args.threshold) for r in rows):
        return 1
    return 0


def _label(path: Path) -> str:
    """A run's name in the comparison: its folder's for DIR/results.json."""
    return path.parent.name if path.name == flags.RESULTS_FILE and path.parent.name else path.stem


def _report(args: argparse.Namespace) -> int:
    from codeserve.cli.loadtest_run import output_paths, write_outputs
    from codeserve.loadtest.report import console_table, read_json

    result = read_json(flags.results_file(args.result))
    print(console_table(result))
    _, html = output_paths(args)
    write_outputs(result, None, html)
    return 0
