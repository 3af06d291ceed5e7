"""Arrival schedules: right mean rate, seeded, and burstiness changes the spread not the mean."""

from __future__ import annotations

import statistics

import pytest

from codeserve.loadtest.arrivals import schedule
from codeserve.loadtest.protocol import ArrivalSpec


def _gaps(offsets: list[float]) -> list[float]:
    return [b - a for a, b in zip(offsets, offsets[1:])]


def test_constant_arrivals_are_evenly_spaced() -> None:
    offsets = schedule(ArrivalSpec(mode="constant", rate=4), seed=0, count=5)
    assert offsets == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert schedule(ArrivalSpec(mode="constant", rate=4), seed=0, duration_s=1.0) == pytest.approx(
        [0, 0.25, 0.5, 0.75]
    )


def test_poisson_is_seeded_and_has_the_asked_rate() -> None:
    spec = ArrivalSpec(mode="poisson", rate=50)
    a = schedule(spec, seed=7, count=4000)
    assert a == schedule(spec, seed=7, count=4000)
    assert a != schedule(spec, seed=8, count=4000)
    gaps = _gaps(a)
    assert statistics.mean(gaps) == pytest.approx(1 / 50, rel=0.05)
    # exponential gaps: coefficient of variation 1
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, rel=0.08)


def test_burstiness_below_one_spreads_gaps_and_keeps_the_mean() -> None:
    bursty = _gaps(
        schedule(ArrivalSpec(mode="poisson", rate=50, burstiness=0.25), seed=1, count=4000)
    )
    smooth = _gaps(
        schedule(ArrivalSpec(mode="poisson", rate=50, burstiness=4.0), seed=1, count=4000)
    )
    for gaps in (bursty, smooth):
        assert statistics.mean(gaps) == pytest.approx(1 / 50, rel=0.08)
    cv = [statistics.pstdev(g) / statistics.mean(g) for g in (bursty, smooth)]
    assert cv[0] == pytest.approx(2.0, rel=0.15)  # 1/sqrt(shape)
    assert cv[1] == pytest.approx(0.5, rel=0.1)


def test_spec_requires_the_parameter_of_its_mode() -> None:
    with pytest.raises(ValueError, match="needs a rate"):
        ArrivalSpec(mode="poisson")
    with pytest.raises(ValueError, match="needs a concurrency"):
        ArrivalSpec(mode="closed")
