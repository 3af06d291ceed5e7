"""Why a run's candidates failed, sorted into causes that point at a setup problem or not.

A model that scores far below its published number usually fails in a few telltale ways: empty
answers or answers without the function (a chat model asked with a base prompt, or a base model
whose chat template was applied), syntax errors (a stop sequence cut the code, or markup leaked
into it), answers cut at max_tokens, a NameError (an import the answer left out or lost, a
helper defined after a stop sequence and cut off). Wrong answers and timeouts are the model's own.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from codeserve.client.bakeoff.results import Evidence, FailureExample, PhaseKind
from codeserve.client.protocol import EvalRecord
from codeserve.client.run_scoring import ScoredSample

EXAMPLES_PER_CATEGORY = 3
# Most telling first: a candidate counts under the first cause that fits.
CATEGORIES = (
    "empty answer",
    "no function defined",
    "cut at max_tokens",
    "syntax error",
    "NameError (import or helper missing)",
    "timeout",
    "wrong answer",
    "runtime error",
)
# Causes that point at the harness's setup (prompt format, stops, template) more than the model.
SETUP_CAUSES = CATEGORIES[:5]


def categorize(
    sample: ScoredSample, finish_reason: str | None, entry_point: str | None = None
) -> str:
    """`entry_point`: the function a whole-program answer (chat) must define, when known."""
    result = sample.result
    if not sample.completion.strip():
        return "empty answer"
    if "defines no function" in result or (
        entry_point and not re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", sample.completion)
    ):
        return "no function defined"
    if finish_reason == "length":
        return "cut at max_tokens"
    if any(name in result for name in ("SyntaxError", "IndentationError", "TabError")):
        return "syntax error"
    if "NameError" in result:
        return "NameError (import or helper missing)"
    if result.startswith("timeout"):
        return "timeout"
    if result.startswith("failed"):
        return "wrong answer"
    return "runtime error"


def load_samples(path: Path) -> list[ScoredSample]:
    if not path.exists():
        return []
    return [
        ScoredSample.model_validate(orjson.loads(line))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]


def finish_reasons(records: Sequence[EvalRecord]) -> dict[str, list[tuple[str, str | None]]]:
    """Per task, (completion, finish_reason) of its saved candidates."""
    out: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for r in records:
        if not r.ok:
            continue
        reasons = list(r.finish_reasons) + [None] * (len(r.completions) - len(r.finish_reasons))
        out[r.task_id].extend(zip(r.completions, reasons, strict=False))
    return out


def evidence(
    kind: PhaseKind,
    samples: Sequence[ScoredSample],
    records: Sequence[EvalRecord],
    entry_points: Mapping[str, str] | None = None,
) -> Evidence:
    """`entry_points` (task id -> function name): given when answers are whole programs (chat
    prompts), so an answer that never defines the function is told from a wrong one."""
    reasons = finish_reasons(records)
    counts: Counter[str] = Counter()
    examples: dict[str, list[FailureExample]] = defaultdict(list)
    failed = 0
    for sample in samples:
        if sample.passed:
            continue
        failed += 1
        finish = _pop_reason(reasons.get(sample.task_id, []), sample.completion)
        cause = categorize(sample, finish, (entry_points or {}).get(sample.task_id))
        counts[cause] += 1
        if len(examples[cause]) < EXAMPLES_PER_CATEGORY:
            examples[cause].append(
                FailureExample(
                    task_id=sample.task_id, result=_short(sample.result), finish_reason=finish
                )
            )
    ordered = {c: counts[c] for c in CATEGORIES if counts[c]}
    return Evidence(
        phase=kind,
        candidates=len(samples),
        failed=failed,
        categories=ordered,
        examples={c: examples[c] for c in ordered},
    )


def setup_failures(ev: Evidence) -> int:
    return sum(count for cause, count in ev.categories.items() if cause in SETUP_CAUSES)


def _pop_reason(candidates: list[tuple[str, str | None]], completion: str) -> str | None:
    for i, (text, reason) in enumerate(candidates):
        if text == completion:
            del candidates[i]
            return reason
    return None


def _short(text: str, limit: int = 140) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
