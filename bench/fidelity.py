"""Fidelity on a real model: greedy pass@1 of the offline default model (the real
Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF) on the full HumanEval, HumanEval+, MBPP and MBPP+,
through the gateway and our eval harness, beside the published numbers and beside evalplus's own
evaluator on the very same samples.

    python -m bench.fidelity --data-dir /work/shared/data            # ~1 h on 2 cores
    python -m bench.fidelity --data-dir DIR --limit 5 --out runs/fid  # a smoke run
    python -m bench.fidelity --data-dir DIR --base-url http://127.0.0.1:8000 --model NAME

1. Unless --base-url is given, `codeserve serve` starts with the default model on the built-in CPU
   engine settings (bench.real_gateway, as bench.cpu_engine does).
2. Per pair, one generation: `codeserve eval -b humaneval+` (HumanEval and HumanEval+ share
   prompts) and `codeserve eval -b mbpp+` (EvalPlus's 378 MBPP tasks; its "MBPP" score is the
   base tests of those tasks), chat format, temperature 0, n=1, concurrency 8. The eval scores the
   Plus benchmark; `codeserve score` on its samples scores the other: `-b humaneval` (the original
   check()), and `-b mbpp+`, whose per-sample `base_passed` is the MBPP verdict.
3. The same programs go to evalplus 0.3.1 (`evalplus.evaluate --samples`, `solution` = the program
   our scorer runs), installed in its own venv (--evalplus-venv) and pointed at our data files
   (HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH, a copy holding the tasks that were run), so it
   neither downloads anything nor touches the project's venv.
4. A table of pass@1 (ours, evalplus, published) and per-sample agreement; every disagreement
   with both verdicts; fidelity.json in --out.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.real_gateway import REPO, default_model_gateway, load_average

EVALPLUS = "evalplus==0.3.1"
DEFAULT_VENV = Path.home() / ".cache" / "codeserve" / "bench" / "evalplus-venv"
PUBLISHED_KEY = "qwen2.5-coder-0.5b-instruct"


@dataclass(frozen=True)
class Pair:
    """One generation (`plus`) scored as two benchmarks."""

    plus: str  # the benchmark generated and scored by `codeserve eval`
    base: str  # the other benchmark's name (our published-score key)
    score_base_as: str  # `codeserve score -b` for the base verdicts (mbpp+: its base_passed)
    evalplus: str  # evalplus --dataset
    override_env: str  # evalplus's variable naming its data file
    source: str  # our data file of the Plus benchmark


PAIRS = {
    "humaneval": Pair(
        "humaneval+",
        "humaneval",
        "humaneval",
        "humaneval",
        "HUMANEVAL_OVERRIDE_PATH",
        "HumanEvalPlus-v0.1.10.jsonl.gz",
    ),
    "mbpp": Pair(
        "mbpp+", "mbpp", "mbpp+", "mbpp", "MBPP_OVERRIDE_PATH", "MbppPlus-v0.2.0.jsonl.gz"
    ),
}

Verdicts = dict[str, tuple[bool, str]]  # task_id -> (passed, why)


def codeserve(*args: str) -> list[str]:
    return [sys.executable, "-m", "codeserve.cli.main", *args]


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """`cmd` with its output appended to `log`; returns the exit code."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        return subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, check=False
        ).returncode


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


# --- generation ---------------------------------------------------------------------------


def generate(
    url: str, model: str, pair: Pair, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    """`codeserve eval` of the Plus benchmark; wall time, load and what the records say about
    retries, failed requests and lost samples."""
    cmd = codeserve(
        "eval", "--base-url", url, "--model", model, "-b", pair.plus, "--format", "chat",
        "--temperature", "0", "-n", "1", "--max-tokens", str(args.max_tokens),
        "--concurrency", str(args.concurrency), "--out", str(out), "--no-progress",
    )  # fmt: skip
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    load_start, started = load_average(), time.monotonic()
    code = run(cmd, out.parent / "bench.log")
    wall = time.monotonic() - started
    if not (out / "results.json").exists():
        raise SystemExit(f"codeserve eval failed ({code}); see {out.parent / 'bench.log'}")
    results = json.loads((out / "results.json").read_text())
    records = read_jsonl(out / "records.jsonl")[1:]  # the first line is the header
    finish = [r for rec in records for r in rec.get("finish_reasons", [])]
    return {
        "command": " ".join(cmd),
        "exit_code": code,
        "wall_s": round(wall, 1),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "tasks": results["metadata"]["tasks"],
        "requests": len(records),
        "retries": sum(r.get("attempts", 1) - 1 for r in records),
        "retried_requests": sum(1 for r in records if r.get("attempts", 1) > 1),
        "failed_requests": results["throughput"]["failed_requests"],
        "lost_samples": sum(results["missing_samples"].values()),
        "complete": results["complete"],
        "errors": results["errors"],
        "cut_at_max_tokens": finish.count("length"),
        "output_tokens": results["throughput"]["output_tokens"],
        "output_tokens_per_s": results["throughput"]["output_tokens_per_s"],
    }


# --- our verdicts -------------------------------------------------------------------------


def our_verdicts(pair: Pair, run_dir: Path, data_dir: Path | None) -> tuple[Verdicts, Verdicts]:
    """(Plus verdicts from the eval's samples.jsonl, base verdicts from `codeserve score`)."""
    plus = {
        s["task_id"]: (bool(s["passed"]), str(s["result"]))
        for s in read_jsonl(run_dir / "samples.jsonl")
    }
    out = run_dir / f"score-{pair.score_base_as}"
    verdicts_file = out / "verdicts.jsonl"
    verdicts_file.unlink(missing_ok=True)
    cmd = codeserve("score", str(run_dir / "samples.jsonl"), "-b", pair.score_base_as, "-k", "1")
    cmd += ["--out", str(out)] + (["--data-dir", str(data_dir)] if data_dir else [])
    if run(cmd, run_dir.parent / "bench.log") != 0:
        raise SystemExit(f"codeserve score failed; see {run_dir.parent / 'bench.log'}")
    base: Verdicts = {}
    for v in read_jsonl(verdicts_file):
        passed = v["base_passed"] if v.get("base_passed") is not None else v["passed"]
        why = "passed" if passed else f"{v['status']}: {v['detail']}".rstrip(": ")
        base[v["task_id"]] = (bool(passed), why)
    return plus, base


# --- evalplus -----------------------------------------------------------------------------


def evalplus_venv(venv: Path, log: Path) -> Path:
    """evalplus in a venv of its own (created on first use), so its pins stay out of ours."""
    tool = venv / "bin" / "evalplus.evaluate"
    if not tool.exists():
        if run([sys.executable, "-m", "venv", str(venv)], log) != 0:
            raise SystemExit(f"could not create {venv}; see {log}")
        if run([str(venv / "bin" / "pip"), "install", "-q", EVALPLUS], log) != 0:
            raise SystemExit(f"pip install {EVALPLUS} failed; see {log}")
    return tool


def evalplus_verdicts(
    pair: Pair, run_dir: Path, data_dir: Path | None, tool: Path
) -> tuple[Verdicts, Verdicts]:
    """(Plus, base) verdicts of `evalplus.evaluate` on the programs our scorer ran."""
    from codeserve.datasets import load_benchmark
    from codeserve.scoring.programs import build_program

    benchmark = load_benchmark(pair.plus, data_dir)
    samples = read_jsonl(run_dir / "samples.jsonl")
    wanted = {s["task_id"] for s in samples}
    work = run_dir / "evalplus"
    work.mkdir(exist_ok=True)
    # evalplus insists on a sample for every task of its data file: give it the tasks we ran.
    data = work / pair.source.removesuffix(".gz")
    write_jsonl(data, [t for t in read_jsonl(benchmark.source_file) if t["task_id"] in wanted])
    sample_file = work / "samples.jsonl"
    write_jsonl(
        sample_file,
        [
            {
                "task_id": s["task_id"],
                "solution": build_program(benchmark, benchmark.task(s["task_id"]), s["completion"]),
            }
            for s in samples
        ],
    )
    result_file = work / "samples_eval_results.json"
    result_file.unlink(missing_ok=True)  # else evalplus prints the old results
    env = {**os.environ, pair.override_env: str(data)}
    cmd = [str(tool), "--dataset", pair.evalplus, "--samples", str(sample_file)]
    if run(cmd, run_dir.parent / "bench.log", env) != 0 or not result_file.exists():
        raise SystemExit(f"evalplus.evaluate failed; see {run_dir.parent / 'bench.log'}")
    plus: Verdicts = {}
    base: Verdicts = {}
    for task_id, [res] in json.loads(result_file.read_text())["eval"].items():
        base_ok = res["base_status"] == "pass"
        plus_ok = base_ok and res["plus_status"] == "pass"
        base[task_id] = (base_ok, _evalplus_why(res["base_status"], res["base_fail_tests"]))
        plus[task_id] = (
            plus_ok,
            _evalplus_why(res["plus_status"], res["plus_fail_tests"])
            if base_ok
            else base[task_id][1],
        )
    return plus, base


def _evalplus_why(status: str, failed: list[Any]) -> str:
    return status if not failed else f"{status} on input {json.dumps(failed[0])[:200]}"


# --- the comparison -----------------------------------------------------------------------


def compare(name: str, ours: Verdicts, theirs: Verdicts, published: float | None) -> dict[str, Any]:
    tasks = sorted(ours.keys() & theirs.keys(), key=lambda t: int(t.split("/")[-1]))
    agree = sum(ours[t][0] == theirs[t][0] for t in tasks)
    return {
        "benchmark": name,
        "tasks": len(tasks),
        "ours_pass@1": 100 * sum(ours[t][0] for t in tasks) / max(len(tasks), 1),
        "evalplus_pass@1": 100 * sum(theirs[t][0] for t in tasks) / max(len(tasks), 1),
        "published": published,
        "agreement": agree,
        "only_in_one": sorted(ours.keys() ^ theirs.keys()),
        "disagreements": [
            {"task_id": t, "ours": ours[t][1][:300], "evalplus": theirs[t][1][:300]}
            for t in tasks
            if ours[t][0] != theirs[t][0]
        ],
    }


def print_table(rows: list[dict[str, Any]], limit: int | None) -> None:
    print(f"\n{'benchmark':<12}{'ours':>8}{'evalplus':>10}{'published':>11}{'agreement':>14}")
    for r in rows:
        pub = f"{r['published']:.1f}" if r["published"] is not None else "-"
        agree = f"{r['agreement']}/{r['tasks']}"
        print(
            f"{r['benchmark']:<12}{r['ours_pass@1']:>8.1f}{r['evalplus_pass@1']:>10.1f}"
            f"{pub:>11}{agree:>14}"
        )
    if limit:
        print(f"(first {limit} tasks only: not comparable with the published full-set numbers)")
    for r in rows:
        for d in r["disagreements"]:
            print(
                f"  {r['benchmark']} {d['task_id']}: ours {d['ours']!r}; evalplus {d['evalplus']!r}"
            )
        if r["only_in_one"]:
            print(f"  {r['benchmark']}: judged by one side only: {r['only_in_one']}")


@contextlib.contextmanager
def endpoint(args: argparse.Namespace, out: Path) -> Iterator[tuple[str, str]]:
    if args.base_url:
        yield args.base_url, args.model
        return
    with default_model_gateway(out / "gateway") as (url, model, ready_s):
        print(f"gateway ready in {ready_s:.0f} s at {url} ({model})", flush=True)
        yield url, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--limit", type=int, help="only the first K tasks of each benchmark")
    parser.add_argument("--out", type=Path, default=Path("runs/fidelity"))
    parser.add_argument("--base-url", help="reuse a running gateway (default: start one)")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="with --base-url")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pairs", default="humaneval,mbpp", help="humaneval, mbpp or both")
    parser.add_argument("--evalplus-venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args(argv)

    from codeserve.client.bakeoff.published import COLUMNS, PUBLISHED

    published = next(p for p in PUBLISHED if p.key == PUBLISHED_KEY).scores
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tool = evalplus_venv(args.evalplus_venv, out / "bench.log")
    report: dict[str, Any] = {"max_tokens": args.max_tokens, "limit": args.limit, "runs": {}}
    rows: list[dict[str, Any]] = []
    print(f"load average at start: {load_average()}", flush=True)
    with endpoint(args, out) as (url, model):
        report["model"] = model
        for key in args.pairs.split(","):
            pair = PAIRS[key.strip()]
            run_dir = out / pair.plus.replace("+", "plus")
            gen = generate(url, model, pair, args, run_dir)
            report["runs"][pair.plus] = gen
            print(
                f"{pair.plus}: {gen['tasks']} tasks in {gen['wall_s']:.0f} s, "
                f"{gen['requests']} requests, {gen['retries']} retries, "
                f"{gen['failed_requests']} failed, {gen['lost_samples']} samples lost, "
                f"{gen['cut_at_max_tokens']} answers cut at {args.max_tokens} tokens; load "
                f"{gen['load_average_start']} -> {gen['load_average_end']}",
                flush=True,
            )
            ours_plus, ours_base = our_verdicts(pair, run_dir, args.data_dir)
            ep_plus, ep_base = evalplus_verdicts(pair, run_dir, args.data_dir, tool)
            for bench_name, ours, theirs in (
                (pair.base, ours_base, ep_base),
                (pair.plus, ours_plus, ep_plus),
            ):
                row = compare(COLUMNS[bench_name], ours, theirs, published.get(bench_name))
                rows.append(row)
                print_table([row], None)
            report["table"] = rows
            (out / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(rows, args.limit)
    print(f"load average at the end: {load_average()}; results in {out / 'fidelity.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
