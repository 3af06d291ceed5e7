"""Presenting a result: console table, results JSON, and a self-contained HTML report."""

from __future__ import annotations

from html import escape
from pathlib import Path

from pydantic import ValidationError

from codeserve.common.charts import Series, line_chart
from codeserve.common.errors import CliError, validation_message
from codeserve.common.stats import Distribution
from codeserve.loadtest.protocol import LoadtestResult, Summary

LATENCIES = (
    ("TTFT", "ttft_ms"),
    ("TPOT", "tpot_ms"),
    ("ITL", "itl_ms"),
    ("E2E per candidate", "e2e_ms"),
    ("request latency", "request_latency_ms"),
    ("send lag", "send_lag_ms"),
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def rate_lines(s: Summary) -> list[tuple[str, str]]:
    lines = [
        ("window", f"{s.duration_s:.2f} s"),
        ("requests ok / sent", f"{s.requests_ok} / {s.requests}"),
        ("requests/s", f"{s.request_throughput:.2f}"),
        ("candidates/s", f"{s.candidate_throughput:.2f}"),
        ("output tokens/s", f"{s.output_token_throughput:.1f}"),
    ]
    if s.offered_rate is not None:
        lines.insert(2, ("offered rate", f"{s.offered_rate:g} req/s"))
    if s.goodput is not None:
        lines.append(("goodput (req/s meeting SLOs)", f"{s.goodput:.2f}"))
        lines.append(("candidate goodput/s", f"{s.candidate_goodput or 0:.2f}"))
        lines.append(("SLO attainment", f"{(s.slo_attainment or 0) * 100:.1f}%"))
    if s.errors:
        lines.append(("errors", ", ".join(f"{k}={v}" for k, v in sorted(s.errors.items()))))
        lines += [(f"  e.g. {k}", v) for k, v in sorted(s.error_examples.items())]
    if s.pass_rate is not None:
        lines.append(("pass rate (scored sample)", f"{s.pass_rate * 100:.1f}% of {s.scored}"))
    return lines


def console_table(result: LoadtestResult) -> str:
    s = result.run.summary
    head = f"{'metric (ms)':<20}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}"
    rows = [head, "-" * len(head)]
    for label, field in LATENCIES:
        d: Distribution = getattr(s, field)
        rows.append(
            f"{label:<20}{_ms(d.mean):>10}{_ms(d.p50):>10}{_ms(d.p90):>10}{_ms(d.p99):>10}{_ms(d.max):>10}"
        )
    rows.append("")
    rows += [f"{k:<30}{v}" for k, v in rate_lines(s)]
    if result.sweep is not None:
        rows.append("")
        rows.append(f"{'rate':>8}{'ok':>6}{'TTFT p99':>12}{'E2E p99':>12}{'attain':>9}  meets SLO")
        for p in result.sweep.points:
            ps = p.summary
            rows.append(
                f"{p.rate:>8.2f}{ps.requests_ok:>6}{_ms(ps.ttft_ms.p99):>12}{_ms(ps.e2e_ms.p99):>12}"
                f"{(ps.slo_attainment or 0) * 100:>8.1f}%  {'yes' if p.meets_slo else 'no'}"
            )
        best = result.sweep.best_rate
        rows.append(
            f"highest rate meeting the SLOs: {'none' if best is None else f'{best:g} req/s'}"
        )
    return "\n".join(rows)


def write_json(result: LoadtestResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.model_dump_json(indent=1, exclude_none=False))


def read_json(path: Path) -> LoadtestResult:
    try:
        return LoadtestResult.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise CliError(f"no such results file: {path}") from None
    except ValidationError as exc:
        raise CliError(
            f"{path} is not a loadtest results file: {validation_message(exc)}"
        ) from None


def _cdf(name: str, d: Distribution) -> Series:
    """(value, share of values at or below it) from p0..p100."""
    return Series(name, [(v, q / 100) for q, v in enumerate(d.quantiles)])


def charts(result: LoadtestResult) -> list[str]:
    s = result.run.summary
    out = []
    if result.sweep is not None:
        pts = sorted(result.sweep.points, key=lambda p: p.rate)

        def by_rate(name: str, field: str, q: str) -> Series:
            return Series(
                name, [(p.rate, getattr(getattr(p.summary, field), q) or 0.0) for p in pts]
            )

        out.append(
            line_chart(
                "Latency vs offered rate",
                [
                    by_rate("TTFT p50", "ttft_ms", "p50"),
                    by_rate("TTFT p99", "ttft_ms", "p99"),
                    by_rate("E2E p50", "e2e_ms", "p50"),
                    by_rate("E2E p99", "e2e_ms", "p99"),
                ],
                "offered rate (requests/s)",
                "latency (ms)",
            )
        )
    out.append(
        line_chart(
            "Time to first token (CDF)",
            [_cdf("TTFT", s.ttft_ms)],
            "TTFT (ms, from intended send)",
            "candidates at or below",
            y_percent=True,
        )
    )
    out.append(
        line_chart(
            "Inter-token latency (CDF)",
            [_cdf("ITL (gap between chunks)", s.itl_ms), _cdf("TPOT (per candidate)", s.tpot_ms)],
            "latency (ms)",
            "share at or below",
            y_percent=True,
        )
    )
    tl = result.run.timeline
    if len(tl) > 1:  # each point is a bucket's rate: one at the last bucket's end closes it
        tl = [*tl, tl[-1].model_copy(update={"t_s": 2 * tl[-1].t_s - tl[-2].t_s})]
    out.append(
        line_chart(
            "Throughput over time (warm-up included)",
            [
                Series("candidates/s", [(p.t_s, p.candidates) for p in tl]),
                Series("requests/s", [(p.t_s, p.requests) for p in tl]),
            ],
            "seconds since start",
            "finished per second",
            steps=True,
        )
    )
    return out


def _table(rows: list[list[str]], header: list[str]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def html_report(result: LoadtestResult) -> str:
    run = result.run
    s = run.summary
    spec = run.spec
    arrival = spec.arrival
    traffic = (
        f"closed loop, {arrival.concurrency} users"
        if arrival.mode == "closed"
        else f"open loop, {arrival.mode} {arrival.rate:g} req/s, burstiness {arrival.burstiness:g}"
    )
    w = spec.workload
    setup = [
        ["endpoint", f"{spec.base_url} ({w.endpoint})"],
        ["model", spec.model],
        ["traffic", traffic],
        [
            "workload",
            f"{w.source}, n={w.n}, max_tokens={w.max_tokens}, FIM share {w.fim_fraction:g}",
        ],
        ["length", f"{spec.duration_s} s" if spec.duration_s else f"{spec.num_requests} requests"],
        ["warm-up", f"{spec.warmup_s} s / {spec.warmup_requests} requests"],
        ["seed", str(spec.seed)],
    ]
    lat_rows = []
    for label, field in LATENCIES:
        d: Distribution = getattr(s, field)
        lat_rows.append(
            [label, str(d.count)]
            + [_ms(getattr(d, q)) for q in ("mean", "p50", "p90", "p99", "max")]
        )
    rates = [[k, v] for k, v in rate_lines(s)]
    figures = "\n".join(charts(result))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>codeserve load test</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.charts{{display:flex;flex-wrap:wrap;gap:1em 1.5em}}</style></head>
<body><h1>Load test: {escape(spec.model)}</h1><p>created {escape(result.created)}</p>
{_table(setup, ["setting", "value"])}
<h2>Latency (ms, from intended send time)</h2>
{_table(lat_rows, ["metric", "count", "mean", "p50", "p90", "p99", "max"])}
<h2>Throughput</h2>{_table(rates, ["figure", "value"])}
<h2>Plots</h2><div class="charts">{figures}</div>
</body></html>
"""


def write_html(result: LoadtestResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report(result))
