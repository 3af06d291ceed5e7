"""The leaderboard on the console, in leaderboard.md and in report.html (one file, charts inline as
SVG from `codeserve.common.charts`, so it opens offline), all from bakeoff.json alone."""

from __future__ import annotations

import html
import re
from pathlib import Path

from codeserve.client.bakeoff.metrics import __doc__ as METRICS_DOC
from codeserve.client.bakeoff.published import COLUMNS, PUBLISHED
from codeserve.client.bakeoff.results import BakeoffResults, Row
from codeserve.client.report import Table
from codeserve.common.charts import Point, Series, line_chart, scatter_chart

MARKDOWN_FILE = "leaderboard.md"
HTML_FILE = "report.html"
FLAG = "⚠"


def write_reports(results: BakeoffResults, out_dir: Path) -> tuple[Path, Path]:
    markdown, page = out_dir / MARKDOWN_FILE, out_dir / HTML_FILE
    markdown.write_text(render_markdown(results), encoding="utf-8")
    page.write_text(render_html(results), encoding="utf-8")
    return markdown, page


# -- cells ------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _published(row: Row) -> str:
    """The published pass@1 and our gap to it: `57.3 (-12.1 ⚠)`; `⚠?` when the slice is too
    small to tell the gap from noise."""
    check = row.published
    if check is None:
        return "-"
    text = f"{check.published_pct:.1f} ({check.gap_pp:+.1f}"
    if check.flagged:
        text += f" {FLAG}" + ("?" if check.within_noise else "")
    return text + ")"


def _ks(results: BakeoffResults) -> list[int]:
    n = results.metadata.settings.n
    return sorted({k for k in (10, n) if 1 <= k <= n and k != 1})


def leaderboard_table(results: BakeoffResults, benchmark: str) -> Table:
    s = results.metadata.settings
    ks = _ks(results)
    header = [
        "#",
        "model",
        "prompt",
        "pass@1 %",
        "published (gap pp)",
        *(f"pass@{k} %" for k in ks),
        "cand/s",
        "tok/s",
        "TTFT p50/p99 ms",
        f"time for {s.n or 1} s",
        "solved/min",
        "Pareto",
    ]
    rows = []
    rank = 0
    for row in results.rows:
        if row.benchmark != benchmark:
            continue
        if row.skipped:
            rows.append(
                ["", row.label, "-", *(["-"] * (len(header) - 4)), f"skipped: {row.skipped}"]
            )
            continue
        rank += 1
        rows.append(
            [
                str(rank),
                row.label + ("" if row.complete else " (incomplete)"),
                row.prompt_format or "-",
                _pct(row.pass_at_1),
                _published(row),
                *(_pct(row.pass_at_k.get(f"pass@{k}")) for k in ks),
                _num(row.candidates_per_s),
                _num(row.output_tokens_per_s, 0),
                f"{_ms(row.ttft_p50_s)}/{_ms(row.ttft_p99_s)}",
                _num(row.time_for_k_s),
                _num(row.solved_per_min),
                "★" if row.pareto else "",
            ]
        )
    return Table(_board_title(results, benchmark), header, rows)


def _board_title(results: BakeoffResults, benchmark: str) -> str:
    tasks = max((r.tasks for r in results.rows if r.benchmark == benchmark), default=0)
    return f"{benchmark} ({tasks} tasks)"


def sampling_line(results: BakeoffResults) -> str:
    s = results.metadata.settings
    parts = []
    if s.greedy:
        parts.append("1 greedy candidate per task (pass@1, TTFT)")
    if s.n:
        parts.append(
            f"{s.n} sampled at temperature {s.temperature:g}, top_p {s.top_p:g} (pass@k, speed)"
        )
    load = (
        f"{s.concurrency} requests in flight, each for all of one task's candidates, "
        f"{'streamed' if s.stream else 'not streamed'}, max_tokens {s.max_tokens}; "
        "models measured one at a time"
    )
    return "; ".join(parts) + ". Load: " + load + "."


def flagged_rows(results: BakeoffResults) -> list[Row]:
    return [r for r in results.rows if r.published is not None and r.published.flagged]


def above_lines(results: BakeoffResults) -> list[str]:
    """Pairs well above their published number: not a setup problem, but worth a word (an
    easier slice than the whole benchmark, or another task set)."""
    threshold = results.metadata.settings.gap_threshold_pp
    return [
        f"{r.label} on {r.benchmark}: pass@1 {r.published.ours_pct:.1f}% vs published "
        f"{r.published.published_pct:.1f}% ({r.published.gap_pp:+.1f} pp), above it: "
        f"{r.tasks} tasks (±{r.published.stderr_pp:.1f} pp standard error) may be an easier "
        "slice than the whole benchmark"
        for r in results.rows
        if r.published is not None and r.published.gap_pp > threshold
    ]


def no_flag_line(results: BakeoffResults) -> str:
    checked = [r for r in results.rows if r.published is not None]
    if not checked:
        return (
            "No model here has a published score on these benchmarks (see the table below; "
            "--published MODEL=KEY holds a model against a row)."
        )
    return (
        f"No model is more than {results.metadata.settings.gap_threshold_pp:g} points below "
        f"its published pass@1 ({len(checked)} model/benchmark pairs checked)."
    )


def setup_lines(row: Row) -> list[str]:
    """The gap and the per-task evidence, as plain lines."""
    check = row.published
    assert check is not None
    lines = [
        f"{row.label} on {row.benchmark}: pass@1 {check.ours_pct:.1f}% vs published "
        f"{check.published_pct:.1f}% ({check.model}, {check.source}): {check.gap_pp:+.1f} pp, "
        "likely a setup problem (prompt format, stop sequences, chat template)"
        + (f"; {check.note}" if check.note else "")
    ]
    ev = row.evidence
    if ev is not None and ev.failed:
        lines.append(f"  {ev.failed} of {ev.candidates} {ev.phase} candidates failed:")
        for cause, count in ev.categories.items():
            examples = ", ".join(f"{e.task_id}" for e in ev.examples.get(cause, []))
            first = ev.examples[cause][0].result if ev.examples.get(cause) else ""
            lines.append(f"    {cause}: {count} (e.g. {examples}: {first})")
    return lines


def published_table() -> Table:
    cols = list(COLUMNS)
    return Table(
        "Published pass@1 (greedy, %)",
        ["model", *(COLUMNS[c] for c in cols), "source"],
        [
            [row.model, *(_fmt_pub(row.scores.get(c)) for c in cols), row.source]
            for row in PUBLISHED
        ],
    )


def _fmt_pub(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def targets_table(results: BakeoffResults) -> Table:
    return Table(
        "Models",
        [
            "model",
            "endpoint",
            "served as",
            "checkpoint (root)",
            "prompt style",
            "why",
            "FIM",
            "published row",
        ],
        [
            [
                t.label,
                t.base_url,
                t.model,
                t.root or "-",
                t.style,
                t.style_source,
                "yes" if t.fim else "no",
                t.published_key or "-",
            ]
            for t in results.targets
        ],
    )


def runs_table(results: BakeoffResults) -> Table:
    rows = []
    for row in results.rows:
        for phase in (row.greedy, row.sampled):
            if phase is None:
                continue
            load = "/".join(f"{v:.1f}" for v in phase.load_1m) or "-"
            rows.append(
                [
                    row.label,
                    row.benchmark,
                    phase.kind,
                    phase.prompt_format,
                    f"{phase.tasks} x {phase.n}",
                    str(phase.candidates),
                    f"{phase.requests} ({phase.failed_requests})",
                    _num(phase.engine_s, 1),
                    "-" if phase.output_tokens is None else str(phase.output_tokens),
                    load,
                    "yes" if phase.complete else f"no{': ' + phase.error if phase.error else ''}",
                    phase.run_dir,
                ]
            )
    return Table(
        "Runs (codeserve eval folders)",
        [
            "model",
            "benchmark",
            "phase",
            "format",
            "tasks x n",
            "candidates",
            "requests (failed)",
            "in flight s",
            "output tokens",
            "load 1m before/after",
            "complete",
            "folder",
        ],
        rows,
    )


def machine_line(results: BakeoffResults) -> str:
    m = results.metadata
    load = "/".join(
        "-" if v is None else f"{v:.1f}" for v in (m.machine.load_1m_start, m.machine.load_1m_end)
    )
    return (
        f"{m.machine.cpus} CPUs, {m.machine.platform}; 1-minute load at start/end {load}; "
        f"wall time {m.wall_s:.0f} s; started {m.started_at}; codeserve {m.tool_version}"
    )


def _definitions() -> list[str]:
    lines = (METRICS_DOC or "").strip().splitlines()[3:]
    return [line.rstrip() for line in lines if line.strip()]


# -- console ----------------------------------------------------------------------------------------


def render_console(results: BakeoffResults, out_dir: Path | None = None) -> str:
    lines = [sampling_line(results), ""]
    for benchmark in results.metadata.settings.benchmarks:
        lines.extend(text_table(leaderboard_table(results, benchmark)))
        front = results.pareto.get(benchmark) or []
        if front:
            lines.append(f"Pareto front (pass@k vs candidates/s): {', '.join(front)}")
        lines.append("")
    for row in flagged_rows(results):
        lines.extend(
            f"{FLAG} {line}" if i == 0 else line for i, line in enumerate(setup_lines(row))
        )
        lines.append("")
    if out_dir is not None:
        lines.append(f"bakeoff.json, {MARKDOWN_FILE} and {HTML_FILE} in {out_dir}")
    return "\n".join(lines).rstrip() + "\n"


def text_table(table: Table) -> list[str]:
    rows = [table.header, *table.rows]
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(table.header))]
    out = [f"== {table.title} =="]
    for r in rows:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip())
    return out


# -- markdown ---------------------------------------------------------------------------------------


def render_markdown(results: BakeoffResults) -> str:
    parts = [
        "# Bake-off leaderboard",
        "",
        sampling_line(results),
        "",
        f"Machine: {machine_line(results)}.",
        "",
    ]
    for benchmark in results.metadata.settings.benchmarks:
        table = leaderboard_table(results, benchmark)
        parts += [f"## {table.title}", "", *_md_table(table), ""]
        if results.pareto.get(benchmark):
            parts += [f"Pareto front: {', '.join(results.pareto[benchmark])}.", ""]
    flagged = flagged_rows(results)
    parts += ["## Setup check against published scores", ""]
    if flagged:
        for row in flagged:
            first, *rest = setup_lines(row)
            parts.append(f"- {FLAG} {first}")
            parts.extend(f"  - {line.strip()}" for line in rest[1:])
        parts.append("")
    else:
        parts += [no_flag_line(results), ""]
    if above_lines(results):
        parts += [*(f"- {line}" for line in above_lines(results)), ""]
    for table in (published_table(), targets_table(results), runs_table(results)):
        parts += [f"## {table.title}", "", *_md_table(table), ""]
    parts += ["## How each figure is measured", "", "```", *_definitions(), "```", ""]
    return "\n".join(parts)


def _md_table(table: Table) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [row(table.header), row(["---"] * len(table.header)), *(row(r) for r in table.rows)]


# -- HTML -------------------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}"
    "h1{margin-bottom:.2em}h2{margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.88em}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}"
    "td.text,th{text-align:left}th{white-space:normal}td.wrap{white-space:normal}"
    "th{vertical-align:bottom;min-width:3em}"
    "td.wrap{min-width:14em;max-width:30em}"
    "th{background:#f3f3f3}"
    "tr.flagged td{background:#fff4e5}"
    ".charts{display:flex;flex-wrap:wrap;gap:1em 2em;margin:.5em 0 1em}"
    ".charts>*{flex:0 1 560px}"
    ".note{color:#555;font-size:.92em;max-width:70em}"
    ".flag{color:#b35900;font-weight:600}"
    "pre{background:#f7f7f7;padding:.8em;font-size:.85em;overflow-x:auto}"
    "ul.evidence{margin:.2em 0 1em}"
    ".scroll{overflow-x:auto;max-width:100%}"
)


def charts(results: BakeoffResults, benchmark: str) -> list[str]:
    s = results.metadata.settings
    # In the targets' order, so a model keeps its colour in every chart.
    order = {t.label: i for i, t in enumerate(results.targets)}
    rows = sorted(
        (r for r in results.rows if r.benchmark == benchmark and not r.skipped),
        key=lambda r: order.get(r.label, len(order)),
    )
    k = s.n if s.n else 1
    points = [
        Point(r.label, r.candidates_per_s, headline)
        for r in rows
        if r.candidates_per_s and (headline := _headline(r)) is not None
    ]
    scatter = scatter_chart(
        f"{benchmark}: pass@{k} vs sampling speed",
        points,
        f"candidates/s ({s.n or 1} per request, {s.concurrency} in flight)",
        f"pass@{k}" + (" (unbiased)" if s.n else " (greedy)"),
        front=results.pareto.get(benchmark, []),
        y_percent=True,
    )
    curves = [Series(r.label, [(float(kk), v) for kk, v in r.curve]) for r in rows]
    if any(series.points for series in curves):
        curve = line_chart(
            f"{benchmark}: pass@k by k",
            curves,
            "k (candidates drawn per task)",
            "pass@k (unbiased)",
            y_percent=True,
            x_log=True,
            legend_below=True,
        )
    else:
        greedy = [Series(r.label, [(1.0, r.pass_at_1)]) for r in rows if r.pass_at_1 is not None]
        curve = line_chart(
            f"{benchmark}: pass@1 (greedy)",
            greedy,
            "k",
            "pass@k",
            y_percent=True,
            legend_below=True,
        )
    return [scatter, curve]


def _headline(row: Row) -> float | None:
    if row.k is not None and f"pass@{row.k}" in row.pass_at_k:
        return row.pass_at_k[f"pass@{row.k}"]
    return row.pass_at_1


def render_html(results: BakeoffResults) -> str:
    s = results.metadata.settings
    body = [
        "<h1>Bake-off: which code model to deploy</h1>",
        f"<p class='note'>{html.escape(sampling_line(results))}<br/>Machine: "
        f"{html.escape(machine_line(results))}.</p>",
    ]
    for benchmark in s.benchmarks:
        table = leaderboard_table(results, benchmark)
        body.append(f"<h2>{html.escape(table.title)}</h2>")
        flagged = {r.label for r in flagged_rows(results) if r.benchmark == benchmark}
        body.append(_html_table(table, flagged_labels=flagged))
        body += ["<div class='charts'>", *charts(results, benchmark), "</div>"]
    body.append("<h2>Setup check against published scores</h2>")
    flagged_list = flagged_rows(results)
    if not flagged_list:
        body.append(f"<p>{html.escape(no_flag_line(results))}</p>")
    body += [f"<p>{html.escape(line)}</p>" for line in above_lines(results)]
    for row in flagged_list:
        first, *rest = setup_lines(row)
        body.append(f"<p><span class='flag'>{FLAG}</span> {html.escape(first)}</p>")
        if rest:
            body.append(
                "<ul class='evidence'>"
                + "".join(f"<li>{html.escape(line.strip())}</li>" for line in rest[1:])
                + "</ul>"
            )
    body.append(
        "<p class='note'>A gap over the threshold is flagged; ‘⚠?’ means the slice is "
        "too small to tell it from noise (under two standard errors). Published MBPP "
        "numbers are on other task sets than ours; see the notes.</p>"
    )
    for table in (published_table(), targets_table(results), runs_table(results)):
        body += [f"<h2>{html.escape(table.title)}</h2>", _html_table(table)]
    body += [
        "<h2>How each figure is measured</h2>",
        f"<pre>{html.escape(chr(10).join(_definitions()))}</pre>",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'/><title>Bake-off</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


_NUMERIC = re.compile(r"[-+]?[\d.]+(/[-\d.]+)?( \([-+\d.]+( ⚠\??)?\))?|-|★|")


def _td(cell: str) -> str:
    """Numbers right-aligned; text left-aligned, long text (sources, reasons) wrapped."""
    cls = (
        ""
        if _NUMERIC.fullmatch(cell)
        else (" class='text wrap'" if len(cell) > 40 else " class='text'")
    )
    return f"<td{cls}>{html.escape(cell)}</td>"


def _html_table(table: Table, flagged_labels: set[str] | None = None) -> str:
    out = [
        "<div class='scroll'><table><tr>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in table.header)
        + "</tr>"
    ]
    for row in table.rows:
        label = row[1] if len(row) > 1 else ""
        cls = (
            " class='flagged'" if flagged_labels and label.split(" (")[0] in flagged_labels else ""
        )
        out.append(f"<tr{cls}>" + "".join(_td(c) for c in row) + "</tr>")
    out.append("</table></div>")
    return "".join(out)
