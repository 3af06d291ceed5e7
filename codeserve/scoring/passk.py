"""Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), in a numerically stable form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    # C(n-c, k)/C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials, no cancellation.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def reportable_ks(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> list[int]:
    """The ks for which every task has at least k samples (others are not reported)."""
    if not counts:
        return []
    fewest = min(n for n, _ in counts.values())
    return sorted({k for k in ks if 1 <= k <= fewest})


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """{"pass@k": mean over tasks} for each reportable k; `counts` maps task_id -> (n, c)."""
    return {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
        for k in reportable_ks(counts, ks)
    }
