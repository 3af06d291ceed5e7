"""The bake-off's figures, from an eval run folder's results.json and records.jsonl.

pass@k        unbiased (Chen et al.): per task 1 - C(n-c, k) / C(n, k), averaged over tasks;
              reported only for the k every task has at least k samples for.
candidates/s  scored candidates / time with requests in flight (each session's first send to
              its last answer, summed over the sessions of a resumed run).
tokens/s      output tokens (the endpoint's usage) / the same time.
TTFT          per request, send to first streamed text; p50 and p99 over successful requests.
time for k    per task, first send to last answer of the requests that sampled its candidates
              (summed over sessions); the median over tasks.
solved/min    expected tasks solved with k candidates each (pass@k x tasks) per minute in
              flight of the run that sampled them.
Pareto front  the models no other model beats on both pass@k and candidates/s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from codeserve.client.protocol import EvalRecord, EvalResults, TaskResult
from codeserve.common.stats import percentile
from codeserve.scoring.passk import mean_pass_at_k


def task_counts(tasks: Sequence[TaskResult]) -> dict[str, tuple[int, int]]:
    return {t.task_id: (t.samples, t.correct) for t in tasks}


def headline_ks(n: int) -> list[int]:
    """pass@1, pass@10 and pass@n (as many as exist for n)."""
    return sorted({k for k in (1, 10, n) if 1 <= k <= n})


def pass_at_ks(tasks: Sequence[TaskResult], ks: Sequence[int]) -> dict[str, float]:
    """Mean unbiased pass@k over tasks, for each k every task has >= k samples for."""
    return mean_pass_at_k(task_counts(tasks), ks) if tasks else {}


def pass_curve(tasks: Sequence[TaskResult], n: int) -> list[tuple[int, float]]:
    """(k, pass@k) for k = 1..n (those reportable)."""
    values = pass_at_ks(tasks, range(1, n + 1))
    return [(int(name.split("@")[1]), value) for name, value in values.items()]


def time_for_candidates(
    records: Sequence[EvalRecord], wanted: set[str] | None = None
) -> list[float]:
    """Per task: the span from the first send to the last answer of its successful requests,
    summed over sessions (idle time between a killed run and its rerun does not count)."""
    spans: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if not r.ok or r.latency_s is None or (wanted is not None and r.task_id not in wanted):
            continue
        span = spans.setdefault((r.task_id, r.session), [r.sent_at, r.sent_at + r.latency_s])
        span[0] = min(span[0], r.sent_at)
        span[1] = max(span[1], r.sent_at + r.latency_s)
    per_task: dict[str, float] = defaultdict(float)
    for (task_id, _session), (start, end) in spans.items():
        per_task[task_id] += end - start
    return list(per_task.values())


def median_and_p90(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    ordered = sorted(values)
    return percentile(ordered, 50), percentile(ordered, 90)


def solved_per_minute(pass_at_k: float | None, tasks: int, engine_s: float) -> float | None:
    """Expected tasks solved (pass@k x tasks) per minute of time in flight."""
    if pass_at_k is None or engine_s <= 0 or tasks <= 0:
        return None
    return pass_at_k * tasks / (engine_s / 60.0)


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names of the points (x, y) that no other point matches or beats on both with one strictly
    better; bigger is better on both axes. In x order."""
    front = []
    for name, (x, y) in points.items():
        dominated = any(
            (ox >= x and oy >= y) and (ox > x or oy > y)
            for other, (ox, oy) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda name: points[name])


def missing(results: EvalResults) -> int:
    return sum(results.missing_samples.values())
