"""The pinned public files behind each benchmark name: file name, release URL and sha256."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    """One public data file, identified by the name it is stored under locally."""

    filename: str
    url: str
    sha256: str
    # Other places the same bytes may already sit (checked before downloading).
    fallbacks: tuple[str, ...] = ()

    def fallback_paths(self) -> list[Path]:
        return [p for p in (_resolve_fallback(f) for f in self.fallbacks) if p is not None]


def _resolve_fallback(spec: str) -> Path | None:
    """`pkg:module/relative/path` names a file shipped inside an installed Python package."""
    if not spec.startswith("pkg:"):
        return Path(spec)
    module, _, rel = spec[4:].partition("/")
    try:
        from importlib.util import find_spec

        found = find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / rel


_HE = "https://github.com/openai/human-eval/raw/master/data/"
_HEI = "https://github.com/openai/human-eval-infilling/raw/master/data/"
_HEP = "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
_MBPPP = "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/"
_MBPP = "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/"

HUMANEVAL = SourceFile(
    "HumanEval.jsonl.gz",
    _HE + "HumanEval.jsonl.gz",
    "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    fallbacks=("pkg:human_eval/data/HumanEval.jsonl.gz",),
)
HUMANEVAL_PLUS = SourceFile(
    "HumanEvalPlus-v0.1.10.jsonl.gz",
    _HEP + "HumanEvalPlus.jsonl.gz",
    "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
)
HUMANEVAL_PLUS_MINI = SourceFile(
    "HumanEvalPlus-Mini-v0.1.10.jsonl.gz",
    _HEP + "HumanEvalPlus-Mini.jsonl.gz",
    "91486741f1627101021fbe50523df08eebb5b0bf5e804b633dcd5ca3c14dbd2f",
)
MBPP_PLUS = SourceFile(
    "MbppPlus-v0.2.0.jsonl.gz",
    _MBPPP + "MbppPlus.jsonl.gz",
    "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
)
MBPP = SourceFile(
    "mbpp.jsonl",
    _MBPP + "mbpp.jsonl",
    "0b5e07b5b40fedd01c57b7c9177b79f8b2eebd72c304c928605d91a7237d2f33",
)
MBPP_SANITIZED = SourceFile(
    "sanitized-mbpp.json",
    _MBPP + "sanitized-mbpp.json",
    "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9",
)
# human-eval-infilling's loader expects `HumanEval-RandomSpan.jsonl.gz`; the published files carry
# the `...RandomSpanInfilling...` names, which is what we store and fetch.
INFILL_SINGLE = SourceFile(
    "HumanEval-SingleLineInfilling.jsonl.gz",
    _HEI + "HumanEval-SingleLineInfilling.jsonl.gz",
    "1277073e7ddce163ef68598c2bca777f688a53df99422f097e37362090f88e1f",
)
INFILL_MULTI = SourceFile(
    "HumanEval-MultiLineInfilling.jsonl.gz",
    _HEI + "HumanEval-MultiLineInfilling.jsonl.gz",
    "2f341612eee1d35da1357a4f365e0c0b3ba6e2b62eb491e88aaefa4855af0349",
)
INFILL_RANDOM = SourceFile(
    "HumanEval-RandomSpanInfilling.jsonl.gz",
    _HEI + "HumanEval-RandomSpanInfilling.jsonl.gz",
    "b4f330d8a8ff97bf85d9def497dffcae4d741e506449386a877236e422e33e8d",
)
INFILL_RANDOM_LIGHT = SourceFile(
    "HumanEval-RandomSpanInfillingLight.jsonl.gz",
    _HEI + "HumanEval-RandomSpanInfillingLight.jsonl.gz",
    "1432250ecac0cb56e6f97f8faf0970419ef892a98fda7e1f5aa4c4b87209b760",
)
