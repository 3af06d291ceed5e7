"""The fill-in-the-middle prompt format for the HumanEval infilling benchmarks.

The request carries the code before the hole as `prompt` and the code after it as `suffix`; the
endpoint renders its model's FIM template (Codeserve does, per model family). The completion
scored is the middle: the program is `prompt + middle + suffix + test` (`codeserve.scoring.programs`).

Single-line infilling follows the InCoder/SantaCoder convention: the hole is one line, so
generation stops at the first newline and the middle is that line plus its newline (the suffix
starts on the next line). Multi-line and random-span holes end where the model ends the middle
(its FIM stop tokens, which the endpoint applies).
"""

from __future__ import annotations

from pathlib import Path

from codeserve.datasets.models import Benchmark, Family, Task
from codeserve.scoring.prompt_format import PromptFormat, PromptRequest

SINGLE_LINE_BENCHMARK = "humaneval-infill-single"


class FimFormat(PromptFormat):
    name = "fim"
    kind = "completion"
    summary = "base model fills the hole: prefix as `prompt`, code after it as `suffix`"

    def __init__(self, single_line: bool = False) -> None:
        self.single_line = single_line
        self.stops = ("\n",) if single_line else ()

    def applies_to(self, benchmark: Benchmark) -> bool:
        return benchmark.family is Family.INFILL

    def bind(self, benchmark: Benchmark, data_dir: Path | None) -> PromptFormat:
        return FimFormat(single_line=benchmark.name == SINGLE_LINE_BENCHMARK)

    def build(self, task: Task) -> PromptRequest:
        return PromptRequest(
            kind="completion", prompt=task.prompt, suffix=task.suffix, stop=list(self.stops)
        )

    def to_completion(self, text: str, task: Task) -> str:
        if self.single_line:
            return text.split("\n", 1)[0] + "\n"
        return text
