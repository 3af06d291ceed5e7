"""Markdown and HTML reports of an eval run, rendered from `results.json` alone.

Both formats are rendered from the same list of tables; the HTML one adds the charts
(pass@k bars, latency histograms) as inline SVG from `codeserve.common.charts`, so the page is one
file that opens offline.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from codeserve.client.protocol import EvalResults
from codeserve.common.charts import bar_chart, histogram_chart
from codeserve.common.stats import Distribution

Row = list[str]


@dataclass
class Table:
    title: str
    header: Row
    rows: list[Row]


def write_reports(results: EvalResults, out_dir: Path) -> tuple[Path, Path]:
    markdown, page = out_dir / "report.md", out_dir / "report.html"
    markdown.write_text(render_markdown(results), encoding="utf-8")
    page.write_text(render_html(results), encoding="utf-8")
    return markdown, page


def title_of(results: EvalResults) -> str:
    identity = results.metadata.identity
    return f"{identity.model} on {results.metadata.dataset_name}"


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def tables(results: EvalResults) -> list[Table]:
    meta, identity = results.metadata, results.metadata.identity
    run = Table(
        "Run",
        ["field", "value"],
        [
            ["endpoint", meta.endpoint or "(oracle: canonical solutions)"],
            ["model", identity.model],
            [
                "benchmark",
                f"{meta.dataset_name} {meta.dataset_version} (sha256 {identity.dataset_sha256[:12]})",
            ],
            ["prompt format", identity.prompt_format],
            ["tasks x samples", f"{meta.tasks} x {meta.n}"],
            [
                "temperature / top_p / max_tokens",
                f"{identity.temperature} / {identity.top_p} / {identity.max_tokens}",
            ],
            ["stream / concurrency", f"{meta.stream} / {meta.concurrency}"],
            [
                "complete",
                "yes" if results.complete else f"no ({len(results.missing_samples)} tasks short)",
            ],
            ["verdicts", results.verdict_mode or "not recorded"],
            ["codeserve", meta.tool_version],
            ["started / finished", f"{meta.started_at} / {meta.finished_at}"],
        ],
    )
    passk = Table(
        "pass@k", ["k", "pass@k"], [[k, fmt_percent(v)] for k, v in results.pass_at_k.items()]
    )
    latency = Table(
        "Latency (seconds, successful requests)",
        ["metric", "count", "p50", "p90", "p99", "mean"],
        [
            _latency_row("time to first token", results.latency.ttft_s),
            _latency_row("end to end", results.latency.e2e_s),
        ],
    )
    tp = results.throughput
    speed = Table(
        "Throughput",
        ["metric", "value"],
        [
            ["candidates/s", fmt_rate(tp.candidates_per_s)],
            ["output tokens/s", fmt_rate(tp.output_tokens_per_s)],
            ["candidates", str(tp.candidates)],
            ["output tokens", "-" if tp.output_tokens is None else str(tp.output_tokens)],
            ["requests (failed)", f"{tp.requests} ({tp.failed_requests})"],
            ["time in flight (s)", fmt_seconds(tp.duration_s)],
        ],
    )
    ks = sorted({k for task in results.tasks for k in task.pass_at_k}, key=_k_order)
    per_task = Table(
        "Per task",
        ["task", "correct / samples", *ks, "first failure"],
        [
            [
                task.task_id,
                f"{task.correct} / {task.samples}",
                *(fmt_percent(task.pass_at_k.get(k)) for k in ks),
                _short(task.first_failure),
            ]
            for task in results.tasks
        ],
    )
    found = [run, passk, latency, speed]
    if results.errors:
        found.append(
            Table(
                "Errors",
                ["error", "requests"],
                [[_short(e, 200), str(c)] for e, c in results.errors.items()],
            )
        )
    if results.missing_samples:
        found.append(
            Table(
                "Missing samples (rerun the same command to fetch them)",
                ["task", "missing"],
                [[t, str(m)] for t, m in results.missing_samples.items()],
            )
        )
    return [*found, per_task]


def _k_order(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0


def _latency_row(name: str, stats: Distribution) -> Row:
    return [
        name,
        str(stats.count),
        fmt_seconds(stats.p50),
        fmt_seconds(stats.p90),
        fmt_seconds(stats.p99),
        fmt_seconds(stats.mean),
    ]


def _short(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def render_markdown(results: EvalResults) -> str:
    parts = [f"# Eval: {title_of(results)}\n"]
    for table in tables(results):
        parts.append(f"## {table.title}\n")
        parts.append(_md_row(table.header))
        parts.append(_md_row(["---"] * len(table.header)))
        parts.extend(_md_row(row) for row in table.rows)
        parts.append("")
    return "\n".join(parts) + "\n"


def _md_row(cells: Row) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:90em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}"
    ".charts{display:flex;flex-wrap:wrap;gap:1em 2em;margin-bottom:1.5em}"
)


def charts(results: EvalResults) -> list[str]:
    """pass@k, then the end-to-end and (streamed runs) first-token latency histograms."""
    latency = results.latency
    out = [
        bar_chart(
            "pass@k",
            list(results.pass_at_k),
            list(results.pass_at_k.values()),
            "k (candidates drawn per task)",
            "tasks solved (unbiased estimate)",
            percent=True,
        )
    ]
    out.append(
        histogram_chart(
            "End-to-end latency per request",
            latency.e2e_histogram.edges,
            latency.e2e_histogram.counts,
            "seconds",
            "requests",
        )
    )
    if latency.ttft_histogram is not None:
        out.append(
            histogram_chart(
                "Time to first token",
                latency.ttft_histogram.edges,
                latency.ttft_histogram.counts,
                "seconds",
                "requests",
            )
        )
    return out


def render_html(results: EvalResults) -> str:
    body = [
        f"<h1>Eval: {html.escape(title_of(results))}</h1>",
        "<div class='charts'>",
        *charts(results),
        "</div>",
    ]
    for table in tables(results):
        body.append(f"<h2>{html.escape(table.title)}</h2><table>")
        body.append(_html_row(table.header, "th"))
        body.extend(_html_row(row, "td") for row in table.rows)
        body.append("</table>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'/>"
        f"<title>{html.escape(title_of(results))}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _html_row(cells: Row, tag: str) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"
