"""distribution: the one percentile summary of the eval harness and the load tester."""

from __future__ import annotations

import pytest

from codeserve.common.stats import Distribution, distribution


def test_summarizes_in_the_unit_asked_for() -> None:
    d = distribution([0.003, 0.001, 0.002], scale=1000.0)
    assert (d.count, d.mean, d.p50, d.max) == (
        3,
        pytest.approx(2.0),
        pytest.approx(2.0),
        pytest.approx(3.0),
    )
    assert len(d.quantiles) == 101 and d.quantiles[0] == pytest.approx(1.0)
    assert distribution([]) == Distribution()


def test_reads_the_eval_harness_percentiles_written_before_it() -> None:
    old = Distribution.model_validate(
        {"count": 4, "p50": 0.5, "p90": 0.9, "p99": 0.99, "mean": 0.6}
    )
    assert old.p99 == 0.99 and old.max is None and old.quantiles == []
