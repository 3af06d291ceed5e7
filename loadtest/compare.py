"""Side by side: two results files, the change of each headline figure, and which got worse."""

from __future__ import annotations

from dataclasses import dataclass

from codeserve.loadtest.protocol import LoadtestResult, Summary


@dataclass(frozen=True)
class Row:
    label: str
    a: float | None
    b: float | None
    lower_is_better: bool

    @property
    def change_pct(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / abs(self.a) * 100.0

    def worse_by(self, pct: float) -> bool:
        change = self.change_pct
        if change is None:
            return False
        return change > pct if self.lower_is_better else change < -pct


def _figures(s: Summary) -> dict[str, tuple[float | None, bool]]:
    figures: dict[str, tuple[float | None, bool]] = {}
    for label, field in (
        ("TTFT", "ttft_ms"),
        ("TPOT", "tpot_ms"),
        ("ITL", "itl_ms"),
        ("E2E", "e2e_ms"),
    ):
        dist = getattr(s, field)
        figures[f"{label} p50 ms"] = (dist.p50, True)
        figures[f"{label} p99 ms"] = (dist.p99, True)
    figures["send lag p99 ms"] = (s.send_lag_ms.p99, True)
    figures["requests/s"] = (s.request_throughput, False)
    figures["candidates/s"] = (s.candidate_throughput, False)
    figures["output tokens/s"] = (s.output_token_throughput, False)
    figures["goodput req/s"] = (s.goodput, False)
    figures["errors"] = (float(sum(s.errors.values())), True)
    figures["pass rate"] = (s.pass_rate, False)
    return figures


def compare(a: LoadtestResult, b: LoadtestResult) -> list[Row]:
    fa, fb = _figures(a.run.summary), _figures(b.run.summary)
    rows = [Row(label, fa[label][0], fb[label][0], fa[label][1]) for label in fa]
    if a.sweep is not None and b.sweep is not None:
        rows.append(Row("best rate req/s", a.sweep.best_rate, b.sweep.best_rate, False))
    return rows


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(rows: list[Row], name_a: str, name_b: str, threshold_pct: float | None) -> str:
    width = max(len(name_a), len(name_b), 10) + 2
    out = [f"{'figure':<20}{name_a:>{width}}{name_b:>{width}}{'change':>10}"]
    for row in rows:
        change = row.change_pct
        flag = "  worse" if threshold_pct is not None and row.worse_by(threshold_pct) else ""
        shown = "-" if change is None else f"{change:+.1f}%"
        out.append(
            f"{row.label:<20}{_cell(row.a):>{width}}{_cell(row.b):>{width}}{shown:>10}{flag}"
        )
    return "\n".join(out)
