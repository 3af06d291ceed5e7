from __future__ import annotations

from math import comb

import pytest

from codeserve.scoring.passk import mean_pass_at_k, pass_at_k, reportable_ks


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (200, 17, 10), (200, 1, 100), (5, 0, 2)])
def test_matches_the_binomial_definition(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-12)


def test_edges() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 8, 3) == 1.0  # n - c < k
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)


def test_stable_for_large_n() -> None:
    # comb(10000, 5000) overflows float; the product form stays exact enough
    assert pass_at_k(10_000, 1, 5_000) == pytest.approx(0.5)


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_rejects_bad_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_reports_only_ks_every_task_supports() -> None:
    counts = {"a": (10, 2), "b": (5, 5)}
    assert reportable_ks(counts, [1, 5, 10]) == [1, 5]
    means = mean_pass_at_k(counts, [1, 5, 10])
    assert set(means) == {"pass@1", "pass@5"}
    assert means["pass@1"] == pytest.approx((0.2 + 1.0) / 2)
    assert mean_pass_at_k({}, [1]) == {}
