"""Published greedy pass@1 of the small code models we serve, with where each number comes from.

Numbers are percentages as their sources print them. A bake-off row is matched to a published row
by the model's served name or its `root` (the checkpoint the endpoint reports), or by the user's
explicit choice; our greedy pass@1 is then shown beside it, and a shortfall of more than a few
points is flagged as a likely setup problem (prompt format, stop sequences, chat template) rather
than a property of the model.

Caveats the report repeats: "MBPP" means different task sets in different sources (the 500-task
test split here; EvalPlus's 378-task subset in the Qwen2.5-Coder report and on the EvalPlus
leaderboard; 3-shot prompts in DeepSeek's README), and a slice of a benchmark (`--limit`) is a
noisy estimate of the full one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Our benchmark name -> the column name sources use.
COLUMNS = {"humaneval": "HumanEval", "humaneval+": "HumanEval+", "mbpp": "MBPP", "mbpp+": "MBPP+"}
DEFAULT_GAP_PP = 5.0


@dataclass(frozen=True)
class Published:
    key: str
    model: str  # as the source names it
    kind: str  # "base" or "instruct"
    scores: dict[str, float]  # our benchmark name -> pass@1 in percent
    source: str
    pattern: str  # matched against a served name or root, lower-cased
    notes: dict[str, str] = field(default_factory=dict)

    def matches(self, name: str) -> bool:
        return re.search(self.pattern, name.lower()) is not None


_EVALPLUS = "EvalPlus leaderboard (chat prompts)"
_QWEN_REPORT = "Qwen2.5-Coder Technical Report (arXiv:2409.12186; EvalPlus prompts)"

PUBLISHED: tuple[Published, ...] = (
    Published(
        "deepseek-coder-1.3b-base",
        "DeepSeek-Coder-1.3B base",
        "base",
        {"humaneval": 34.8, "mbpp": 46.8},
        "DeepSeek-Coder Evaluation READMEs",
        r"deepseek-coder-1\.3b(?!.*instruct)",
        {"mbpp": "3-shot prompt"},
    ),
    Published(
        "deepseek-coder-1.3b-instruct",
        "DeepSeek-Coder-1.3B instruct",
        "instruct",
        {"humaneval": 65.9, "humaneval+": 60.4, "mbpp": 65.3, "mbpp+": 54.8},
        _EVALPLUS,
        r"deepseek-coder-1\.3b.*instruct",
        {"mbpp": "EvalPlus MBPP subset (378 tasks)"},
    ),
    Published(
        "qwen2.5-coder-0.5b-instruct",
        "Qwen2.5-Coder-0.5B-Instruct",
        "instruct",
        {"humaneval": 61.6, "humaneval+": 57.3, "mbpp": 52.4},
        _QWEN_REPORT,
        r"qwen2\.?5-coder-0\.5b.*instruct",
        {"mbpp": "EvalPlus MBPP subset (378 tasks)"},
    ),
    Published(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B base",
        "base",
        {"humaneval": 43.9, "humaneval+": 36.6, "mbpp": 69.2, "mbpp+": 58.6},
        _QWEN_REPORT,
        r"qwen2\.?5-coder-1\.5b(?!.*instruct)",
        {"mbpp": "EvalPlus MBPP subset (378 tasks)"},
    ),
    Published(
        "qwen2.5-coder-1.5b-instruct",
        "Qwen2.5-Coder-1.5B-Instruct",
        "instruct",
        {"humaneval": 70.7, "humaneval+": 66.5, "mbpp": 69.2, "mbpp+": 59.4},
        _QWEN_REPORT,
        r"qwen2\.?5-coder-1\.5b.*instruct",
        {"mbpp": "EvalPlus MBPP subset (378 tasks)"},
    ),
    Published(
        "starcoder2-3b",
        "StarCoder2-3B",
        "base",
        {"humaneval": 31.7, "humaneval+": 27.4},
        "StarCoder2-3B model card / EvalPlus",
        r"starcoder2-3b",
    ),
    Published(
        "codegemma-2b",
        "CodeGemma-2B v1.1",
        "base",
        {"humaneval": 37.8, "mbpp": 49.2},
        "CodeGemma model card",
        r"codegemma-(1\.1-)?2b",
    ),
    Published(
        "stable-code-3b",
        "stable-code-3b",
        "base",
        {"humaneval": 29.3, "humaneval+": 25.6, "mbpp": 54.8, "mbpp+": 45.8},
        "EvalPlus leaderboard",
        r"stable-code-3b",
    ),
    Published(
        "phi-1",
        "Phi-1",
        "base",
        {"humaneval": 50.6, "mbpp": 55.5},
        "Textbooks Are All You Need (arXiv:2306.11644)",
        r"(^|[/_-])phi-1($|[^.\d])",
    ),
)
BY_KEY = {row.key: row for row in PUBLISHED}


def published_keys() -> list[str]:
    return list(BY_KEY)


def match(*names: str | None) -> Published | None:
    """The published row whose pattern matches the first of `names` (served name, root) that
    matches any row; None when none does."""
    for name in names:
        if not name:
            continue
        for row in PUBLISHED:
            if row.matches(name):
                return row
    return None


@dataclass(frozen=True)
class GapCheck:
    """Our greedy pass@1 beside the published one, in percentage points."""

    published_pct: float
    ours_pct: float
    gap_pp: float  # ours - published
    flagged: bool  # more than `threshold` points below the published number
    stderr_pp: float  # the binomial standard error of ours over `tasks` tasks
    within_noise: bool  # the shortfall is under 2 standard errors: the slice cannot tell


def check_gap(
    published_pct: float, ours: float, tasks: int, threshold_pp: float = DEFAULT_GAP_PP
) -> GapCheck:
    """`ours` is a fraction (0..1) over `tasks` tasks."""
    ours_pct = 100.0 * ours
    gap = ours_pct - published_pct
    # The spread a slice of `tasks` tasks would show if the true rate were the published one.
    p = min(max(published_pct / 100.0, 0.0), 1.0)
    stderr = 100.0 * math.sqrt(p * (1 - p) / tasks) if tasks > 0 else math.inf
    flagged = -gap > threshold_pp
    return GapCheck(
        published_pct=published_pct,
        ours_pct=ours_pct,
        gap_pp=gap,
        flagged=flagged,
        stderr_pp=stderr,
        within_noise=flagged and -gap < 2 * stderr,
    )
