"""`codeserve eval compare A.json B.json`: two results files side by side."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import ValidationError

from codeserve.client.protocol import EvalResults, TaskResult
from codeserve.client.report import Row, Table, fmt_percent, fmt_rate, fmt_seconds
from codeserve.common.errors import CliError, validation_message
from codeserve.common.stats import Distribution

TASK_CHANGES_SHOWN = 20


def load_results(path: Path) -> EvalResults:
    try:
        return EvalResults.model_validate(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path} is a directory; pass its results.json") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{path}: not JSON ({exc})") from None
    except ValidationError as exc:
        raise CliError(
            f"{path}: not a codeserve results file ({validation_message(exc)})"
        ) from None


def compare_files(a: Path, b: Path) -> str:
    return render_comparison(load_results(a), load_results(b), str(a), str(b))


def render_comparison(a: EvalResults, b: EvalResults, name_a: str = "A", name_b: str = "B") -> str:
    header = ["", "A", "B", "B vs A"]
    sections = [
        Table("run", header, _run_rows(a, b)),
        Table("pass@k", header, _pass_rows(a, b)),
        Table("latency (s)", header, _latency_rows(a, b)),
        Table("throughput", header, _throughput_rows(a, b)),
    ]
    lines = [f"A: {name_a}", f"B: {name_b}", ""]
    for table in sections:
        lines.extend(_text_table(table))
        lines.append("")
    lines.extend(_task_changes(a.tasks, b.tasks))
    return "\n".join(lines).rstrip() + "\n"


def _run_rows(a: EvalResults, b: EvalResults) -> list[Row]:
    def fields(r: EvalResults) -> dict[str, str]:
        m, i = r.metadata, r.metadata.identity
        return {
            "endpoint": m.endpoint or "(oracle)",
            "model": i.model,
            "benchmark": f"{m.dataset_name} {m.dataset_version}",
            "dataset sha256": i.dataset_sha256[:12],
            "prompt format": i.prompt_format,
            "tasks x n": f"{m.tasks} x {m.n}",
            "temperature": str(i.temperature),
            "top_p": str(i.top_p),
            "max_tokens": str(i.max_tokens),
            "stream": str(m.stream),
            "concurrency": str(m.concurrency),
            "complete": str(r.complete),
            "codeserve": m.tool_version,
        }

    fa, fb = fields(a), fields(b)
    return [[name, fa[name], fb[name], "" if fa[name] == fb[name] else "differs"] for name in fa]


def _pass_rows(a: EvalResults, b: EvalResults) -> list[Row]:
    rows = []
    for k in dict.fromkeys([*a.pass_at_k, *b.pass_at_k]):
        va, vb = a.pass_at_k.get(k), b.pass_at_k.get(k)
        delta = "" if va is None or vb is None else f"{100 * (vb - va):+.1f} pp"
        rows.append([k, fmt_percent(va), fmt_percent(vb), delta])
    return rows


def _ratio(va: float | None, vb: float | None) -> str:
    return "" if not va or vb is None else f"x{vb / va:.2f}"


def _latency_rows(a: EvalResults, b: EvalResults) -> list[Row]:
    rows = []
    for label, pa, pb in (
        ("ttft", a.latency.ttft_s, b.latency.ttft_s),
        ("e2e", a.latency.e2e_s, b.latency.e2e_s),
    ):
        for q in ("p50", "p90", "p99"):
            va, vb = _q(pa, q), _q(pb, q)
            rows.append([f"{label} {q}", fmt_seconds(va), fmt_seconds(vb), _ratio(va, vb)])
    return rows


def _q(stats: Distribution, q: str) -> float | None:
    value = getattr(stats, q)
    return None if value is None else float(value)


def _throughput_rows(a: EvalResults, b: EvalResults) -> list[Row]:
    ta, tb = a.throughput, b.throughput
    return [
        [
            "candidates/s",
            fmt_rate(ta.candidates_per_s),
            fmt_rate(tb.candidates_per_s),
            _ratio(ta.candidates_per_s, tb.candidates_per_s),
        ],
        [
            "output tokens/s",
            fmt_rate(ta.output_tokens_per_s),
            fmt_rate(tb.output_tokens_per_s),
            _ratio(ta.output_tokens_per_s, tb.output_tokens_per_s),
        ],
        ["failed requests", str(ta.failed_requests), str(tb.failed_requests), ""],
    ]


def _task_changes(a: list[TaskResult], b: list[TaskResult]) -> list[str]:
    """Tasks whose fraction of correct samples moved, biggest moves first."""
    by_id = {t.task_id: t for t in a}
    moves = []
    for task in b:
        old = by_id.get(task.task_id)
        if old is None or not old.samples or not task.samples:
            continue
        delta = task.correct / task.samples - old.correct / old.samples
        if delta:
            moves.append((delta, task.task_id, old, task))
    common = sum(1 for t in b if t.task_id in by_id)
    lines = [
        f"tasks in both: {common}; changed: {len(moves)} "
        f"(better in B: {sum(m[0] > 0 for m in moves)}, worse: {sum(m[0] < 0 for m in moves)})"
    ]
    moves.sort(key=lambda m: (-abs(m[0]), m[1]))
    for delta, task_id, old, new in moves[:TASK_CHANGES_SHOWN]:
        lines.append(
            f"  {task_id}: {old.correct}/{old.samples} -> {new.correct}/{new.samples} "
            f"({100 * delta:+.0f} pp)"
        )
    if len(moves) > TASK_CHANGES_SHOWN:
        lines.append(f"  ... and {len(moves) - TASK_CHANGES_SHOWN} more")
    return lines


def _text_table(table: Table) -> list[str]:
    rows = [table.header, *table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.header))]
    out = [f"== {table.title} =="]
    for row in rows:
        out.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return out
