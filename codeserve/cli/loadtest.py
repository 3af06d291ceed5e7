"""`codeserve loadtest`: run load against an OpenAI-compatible endpoint, or compare/re-render
results files.

    codeserve loadtest --base-url http://127.0.0.1:8000/v1 --rate 5 --duration 30 --out r.json --html r.html
    codeserve loadtest --base-url ... --concurrency 8 --requests 200 --n 4
    codeserve loadtest --base-url ... --sweep --slo-ttft-ms 500 --duration 20
    codeserve loadtest compare before.json after.json [--threshold 10]
    codeserve loadtest report r.json --html r.html
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    target = p.add_argument_group("target")
    target.add_argument("--base-url", "--url", dest="base_url", help="OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    target.add_argument("--model", help="model name (default: the first one /v1/models lists)")
    target.add_argument("--api-key", help="bearer token (default: $CODESERVE_API_KEY or $OPENAI_API_KEY)")
    target.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    target.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")

    traffic = p.add_argument_group("traffic")
    shape = traffic.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, help="closed loop with this many users")
    shape.add_argument("--rate", type=float, help="open loop, requests per second")
    traffic.add_argument("--arrival", choices=("poisson", "constant"), default="poisson",
                         help="open-loop arrivals (default poisson)")
    traffic.add_argument("--burstiness", type=float, default=1.0,
                         help="gamma shape of the gaps: 1 Poisson, <1 burstier")
    length = traffic.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help="seconds of measured load")
    length.add_argument("--requests", type=int, help="number of measured requests")
    traffic.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured load first")
    traffic.add_argument("--warmup-requests", type=int, default=0, help="unmeasured requests first")
    traffic.add_argument("--max-inflight", type=int, default=512, help="open loop: cap on requests in flight")
    traffic.add_argument("--seed", type=int, default=0)

    work = p.add_argument_group("workload")
    work.add_argument("--workload", default="synthetic", help="'synthetic' or a benchmark name (humaneval, mbpp+, ...)")
    work.add_argument("--tasks", type=int, dest="max_tasks", help="benchmark: use only its first N tasks")
    work.add_argument("--data-dir", type=Path, help="benchmark files directory (default: the dataset cache)")
    work.add_argument("--prompt-tokens", type=int, default=128, help="synthetic prompt length")
    work.add_argument("--suffix-tokens", type=int, default=64, help="synthetic FIM suffix length")
    work.add_argument("--fim-fraction", type=float, default=0.0, help="share of requests with a suffix")
    work.add_argument("--n", type=int, default=1, help="candidates per request (1-100)")
    work.add_argument("--max-tokens", type=int, default=64)
    work.add_argument("--min-tokens", type=int)
    work.add_argument("--ignore-eos", action="store_true")
    work.add_argument("--temperature", type=float)

    slo = p.add_argument_group("SLOs, sweep, correctness")
    slo.add_argument("--slo-ttft-ms", type=float)
    slo.add_argument("--slo-tpot-ms", type=float)
    slo.add_argument("--slo-e2e-ms", type=float)
    slo.add_argument("--slo-attainment", type=float, default=0.9, help="share of requests that must meet them")
    slo.add_argument("--sweep", action="store_true", help="find the highest open-loop rate meeting the SLOs")
    slo.add_argument("--sweep-start", type=float, default=1.0, help="first rate of the sweep")
    slo.add_argument("--sweep-max", type=float, default=1000.0, help="highest rate tried")
    slo.add_argument("--sweep-runs", type=int, default=8, help="runs at most")
    slo.add_argument("--score-fraction", type=float, default=0.0, help="share of requests whose candidates are scored")

    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, help="results JSON")
    out.add_argument("--html", type=Path, help="HTML report")
    out.add_argument("--save-records", action="store_true", help="include every request's record in the JSON")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("loadtest", help="load-test an OpenAI-compatible endpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_flags(p)
    p.set_defaults(func=_run)
    sub = p.add_subparsers(dest="loadtest_command", metavar="{compare,report}")
    cmp_p = sub.add_parser("compare", help="compare two results files")
    cmp_p.add_argument("a", type=Path)
    cmp_p.add_argument("b", type=Path)
    cmp_p.add_argument("--threshold", type=float, help="exit 1 when a figure got worse by more than this %%")
    cmp_p.set_defaults(func=_compare)
    rep_p = sub.add_parser("report", help="print a results file and optionally render its HTML report")
    rep_p.add_argument("result", type=Path)
    rep_p.add_argument("--html", type=Path)
    rep_p.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from codeserve.cli.loadtest_run import run_command
    from codeserve.common.settings import ApiKeySettings

    return run_command(args, ApiKeySettings())


def _compare(args: argparse.Namespace) -> int:
    from codeserve.loadtest.compare import compare, render
    from codeserve.loadtest.report import read_json

    rows = compare(read_json(args.a), read_json(args.b))
    print(render(rows, args.a.stem, args.b.stem, args.threshold))
    if args.threshold is not None and any(r.worse_by(args.threshold) for r in rows):
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from codeserve.loadtest.report import console_table, read_json, write_html

    result = read_json(args.result)
    print(console_table(result))
    if args.html:
        write_html(result, args.html)
        print(f"HTML report: {args.html}")
    return 0
