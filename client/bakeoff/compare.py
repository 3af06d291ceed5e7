"""`codeserve bakeoff compare A B`: two bake-offs (two engine settings, two machines, before and
after a change) side by side, model by model and benchmark by benchmark."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import ValidationError

from codeserve.client.bakeoff.report import text_table
from codeserve.client.bakeoff.results import BakeoffResults, Row
from codeserve.client.report import Table
from codeserve.common.errors import CliError, validation_message

BAKEOFF_FILE = "bakeoff.json"


def load_bakeoff(path: Path) -> BakeoffResults:
    file = path / BAKEOFF_FILE if path.is_dir() else path
    try:
        return BakeoffResults.model_validate(orjson.loads(file.read_bytes()))
    except FileNotFoundError:
        raise CliError(
            f"{file}: no such file (a bake-off --out folder holds {BAKEOFF_FILE})"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{file}: not JSON ({exc})") from None
    except ValidationError as exc:
        raise CliError(f"{file}: not a bake-off results file ({validation_message(exc)})") from None


def compare_paths(a: Path, b: Path) -> str:
    return render_comparison(load_bakeoff(a), load_bakeoff(b), str(a), str(b))


def render_comparison(
    a: BakeoffResults, b: BakeoffResults, name_a: str = "A", name_b: str = "B"
) -> str:
    lines = [f"A: {name_a}", f"B: {name_b}", ""]
    lines += text_table(_settings_table(a, b))
    lines.append("")
    rows_a = {(r.label, r.benchmark): r for r in a.rows if not r.skipped}
    rows_b = {(r.label, r.benchmark): r for r in b.rows if not r.skipped}
    benchmarks = list(
        dict.fromkeys([*a.metadata.settings.benchmarks, *b.metadata.settings.benchmarks])
    )
    for benchmark in benchmarks:
        labels = list(
            dict.fromkeys(label for (label, bench) in [*rows_a, *rows_b] if bench == benchmark)
        )
        table_rows = []
        for label in labels:
            ra, rb = rows_a.get((label, benchmark)), rows_b.get((label, benchmark))
            if ra is None or rb is None:
                table_rows.append([label, "only in " + ("A" if rb is None else "B"), *[""] * 7])
                continue
            table_rows.append(
                [
                    label,
                    _same_or_change(ra.prompt_format, rb.prompt_format),
                    _pp(ra.pass_at_1, rb.pass_at_1),
                    _pp(_top(ra), _top(rb), _k(ra), _k(rb)),
                    _ratio(ra.candidates_per_s, rb.candidates_per_s),
                    _ratio(ra.output_tokens_per_s, rb.output_tokens_per_s),
                    _ratio(ra.ttft_p50_s, rb.ttft_p50_s, scale=1000, unit="ms"),
                    _ratio(ra.time_for_k_s, rb.time_for_k_s),
                    _ratio(ra.solved_per_min, rb.solved_per_min),
                ]
            )
        tasks = f"{_tasks(a, benchmark)} vs {_tasks(b, benchmark)} tasks"
        lines += text_table(
            Table(
                f"{benchmark} ({tasks}): A -> B",
                [
                    "model",
                    "prompt",
                    "pass@1",
                    "pass@k",
                    "cand/s",
                    "tok/s",
                    "TTFT p50",
                    "time for k (s)",
                    "solved/min",
                ],
                table_rows,
            )
        )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _settings_table(a: BakeoffResults, b: BakeoffResults) -> Table:
    def fields(r: BakeoffResults) -> dict[str, str]:
        s, m = r.metadata.settings, r.metadata.machine
        return {
            "benchmarks": ",".join(s.benchmarks),
            "n (sampled)": str(s.n),
            "greedy": str(s.greedy),
            "temperature / top_p": f"{s.temperature:g} / {s.top_p:g}",
            "max_tokens": str(s.max_tokens),
            "concurrency": str(s.concurrency),
            "stream": str(s.stream),
            "models": ", ".join(t.label for t in r.targets),
            "machine": f"{m.cpus} CPUs, load {m.load_1m_start}",
            "finished": r.metadata.finished_at,
        }

    fa, fb = fields(a), fields(b)
    return Table(
        "settings",
        ["", "A", "B", ""],
        [[k, fa[k], fb[k], "" if fa[k] == fb[k] else "differs"] for k in fa],
    )


def _top(row: Row) -> float | None:
    if row.k is not None:
        return row.pass_at_k.get(f"pass@{row.k}")
    return row.pass_at_1


def _tasks(r: BakeoffResults, benchmark: str) -> int:
    return max((row.tasks for row in r.rows if row.benchmark == benchmark), default=0)


def _k(row: Row) -> int:
    return row.k if row.k is not None else 1


def _same_or_change(a: str | None, b: str | None) -> str:
    return str(a) if a == b else f"{a} -> {b}"


def _pp(va: float | None, vb: float | None, ka: int | None = None, kb: int | None = None) -> str:
    """`90.0% -> 70.0% (-20.0 pp)`, with each side's k when they differ."""
    left, right = _p(va), _p(vb)
    if ka != kb:
        left, right = f"{left} (k={ka})", f"{right} (k={kb})"
    if va is None or vb is None:
        return f"{left} -> {right}"
    return f"{left} -> {right} ({100 * (vb - va):+.1f} pp)"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ratio(va: float | None, vb: float | None, scale: float = 1.0, unit: str = "") -> str:
    def f(v: float | None) -> str:
        if v is None:
            return "-"
        v *= scale
        return (f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}") + unit

    text = f"{f(va)} -> {f(vb)}"
    if va and vb is not None:
        text += f" (x{vb / va:.2f})"
    return text
