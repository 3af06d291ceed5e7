"""Prompt formats: how a benchmark task becomes a request, and a model's text a scorable completion.

Each format is one small class in `_FORMATS` (the base class: `codeserve.scoring.prompt_format`);
the harness only ever goes through `resolve_format`,
`PromptFormat.build` and `PromptFormat.to_completion`, so a new format (for example fill-in-the-
middle: `PromptRequest(kind="completion", prompt=prefix, suffix=suffix)`) is one more class here.

Stop sequences follow the conventions in shared/reference.md section 3 (bigcode harness for
HumanEval and MBPP, Austin et al. for 3-shot MBPP). They are also applied client-side, because
some endpoints cap or ignore `stop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from codeserve.common.chat import ChatMessage
from codeserve.common.errors import CliError
from codeserve.datasets.models import Benchmark, Family, Task
from codeserve.scoring.fim_prompts import FimFormat
from codeserve.scoring.prompt_format import PromptFormat, PromptRequest, truncate_at_stops
from codeserve.scoring.sanitize import extract_and_sanitize

# Most frequent first: endpoints take at most 4 (see EndpointConfig.max_stop_sequences); the rest
# are applied to the returned text.
HUMANEVAL_STOPS = ("\ndef", "\nclass", "\nif", "\nprint", "\n#", "\n@", "\n```")
MBPP_DOCSTRING_STOPS = ("\nassert", '\n"""', "\nclass", "\nprint", "\nif", "\n```")
MBPP_FEWSHOT_STOPS = ("[DONE]",)
# Austin et al. / DeepSeek / lm-eval use MBPP tasks 2, 3 and 4 (the "prompt" split) as shots.
MBPP_SHOT_IDS = (2, 3, 4)


def _program_extends_prompt(benchmark: Benchmark) -> bool:
    """HumanEval-shaped: the scorer runs `prompt + completion`."""
    return benchmark.family is Family.HUMANEVAL or (
        benchmark.family is Family.PLUS and benchmark.completion_includes_prompt
    )


def _unix_lines(text: str) -> str:
    return text.replace("\r\n", "\n")


def _mbpp_docstring(task: Task, first_test: str) -> str:
    return f'"""\n{task.text or task.prompt}\n{first_test}\n"""\n'


class CompletionFormat(PromptFormat):
    """A base-model format whose prompt is one rendering of the task."""

    kind = "completion"

    def __init__(
        self,
        name: str,
        summary: str,
        stops: tuple[str, ...],
        applies: Callable[[Benchmark], bool],
        render: Callable[[Task], str],
    ) -> None:
        self.name, self.summary, self.stops = name, summary, stops
        self._applies, self._render = applies, render

    def applies_to(self, benchmark: Benchmark) -> bool:
        return self._applies(benchmark)

    def build(self, task: Task) -> PromptRequest:
        return self._completion_request(self._render(task))


HUMANEVAL = CompletionFormat(
    "humaneval",
    "base model continues the HumanEval prompt (signature + docstring)",
    HUMANEVAL_STOPS,
    _program_extends_prompt,
    lambda task: task.prompt,
)
MBPP_DOCSTRING = CompletionFormat(
    "mbpp-docstring",
    "base model writes code after a docstring holding the problem and one assert",
    MBPP_DOCSTRING_STOPS,
    lambda b: b.family is Family.MBPP,
    lambda task: _mbpp_docstring(task, task.test_list[0]),
)
MBPP_PLUS = CompletionFormat(
    "mbpp-plus",
    "base model writes code after MBPP+'s own prompt field (docstring + assert)",
    MBPP_DOCSTRING_STOPS,
    lambda b: b.family is Family.PLUS and not b.completion_includes_prompt,
    lambda task: task.prompt,
)


class MbppFewShotFormat(PromptFormat):
    """Austin et al. 3-shot: each shot is the problem, its three asserts, `[BEGIN]`, code,
    `[DONE]`; the model answers after the task's own `[BEGIN]`."""

    name = "mbpp-3shot"
    kind = "completion"
    summary = "base model, 3-shot [BEGIN]/[DONE] format (MBPP tasks 2-4 as shots)"
    stops = MBPP_FEWSHOT_STOPS

    def __init__(self, shots: Sequence[Task] = ()) -> None:
        self.shots = tuple(shots)

    def applies_to(self, benchmark: Benchmark) -> bool:
        return benchmark.family is Family.MBPP

    def bind(self, benchmark: Benchmark, data_dir: Path | None) -> PromptFormat:
        return MbppFewShotFormat(load_mbpp_shots(data_dir))

    @staticmethod
    def _question(task: Task) -> str:
        tests = "\n".join(task.test_list)
        return (
            "You are an expert Python programmer, and here is your task: "
            f"{task.text or task.prompt} Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
        )

    def build(self, task: Task) -> PromptRequest:
        if not self.shots:
            raise CliError("the mbpp-3shot format needs MBPP tasks 2, 3 and 4 as shots")
        examples = "".join(
            f"{self._question(shot)}{_unix_lines(shot.canonical_solution).strip()}\n[DONE]\n\n"
            for shot in self.shots
        )
        return self._completion_request(examples + self._question(task))

    def to_completion(self, text: str, task: Task) -> str:
        return truncate_at_stops(text, self.stops).strip() + "\n"


class ChatFormat(PromptFormat):
    """Instruct models via /chat/completions; the answer's code is extracted and sanitized."""

    name = "chat"
    kind = "chat"
    summary = "instruct model answers in a Markdown code block; code extracted and sanitized"

    def __init__(self, extends_prompt: bool = True) -> None:
        self.extends_prompt = extends_prompt

    def applies_to(self, benchmark: Benchmark) -> bool:
        return benchmark.family in (Family.HUMANEVAL, Family.MBPP, Family.PLUS)

    def bind(self, benchmark: Benchmark, data_dir: Path | None) -> PromptFormat:
        return ChatFormat(extends_prompt=_program_extends_prompt(benchmark))

    def build(self, task: Task) -> PromptRequest:
        if self.extends_prompt:
            question = (
                "Complete the following Python function. Reply with the complete function, "
                "including any imports it needs, in a single ```python code block.\n\n"
                f"```python\n{task.prompt.rstrip()}\n```"
            )
        else:
            # MBPP: problem text plus its first assert; MBPP+'s prompt already holds both.
            problem = (task.text or task.prompt).strip().strip('"').strip()
            if task.text and task.test_list:
                problem += f"\nYour code should pass this test:\n{task.test_list[0]}"
            question = (
                f"{problem}\n\nWrite the Python function `{task.entry_point}` that solves this, "
                "and reply with the code in a single ```python code block."
            )
        return PromptRequest(kind="chat", messages=[ChatMessage(role="user", content=question)])

    def to_completion(self, text: str, task: Task) -> str:
        code = extract_and_sanitize(text, task.entry_point)
        # The scorer runs prompt + completion for HumanEval: the answer's full definition follows
        # (and replaces) the prompt's docstring-only stub, whose imports and helpers stay in scope.
        return "\n" + code if self.extends_prompt else code


_FORMATS: tuple[PromptFormat, ...] = (
    HUMANEVAL,
    MBPP_DOCSTRING,
    MbppFewShotFormat(),
    MBPP_PLUS,
    ChatFormat(),
    FimFormat(),
)
ORACLE_FORMAT = "oracle"


def format_names() -> list[str]:
    return [f.name for f in _FORMATS]


def describe_formats() -> list[tuple[str, str, str]]:
    """(name, kind, summary) of every format, for `codeserve eval --list-formats`."""
    return [(f.name, f.kind, f.summary) for f in _FORMATS]


def default_format_name(benchmark: Benchmark) -> str:
    """The first completion format that applies: the benchmark's conventional base-model prompt."""
    for fmt in _FORMATS:
        if fmt.kind == "completion" and fmt.applies_to(benchmark):
            return fmt.name
    raise CliError(f"no prompt format applies to benchmark {benchmark.name!r}")


def resolve_format(
    name: str | None, benchmark: Benchmark, data_dir: Path | None = None
) -> PromptFormat:
    """The named (or default) format, checked against and bound to the benchmark."""
    wanted = name or default_format_name(benchmark)
    by_name = {f.name: f for f in _FORMATS}
    if wanted not in by_name:
        raise CliError(f"unknown prompt format {wanted!r} (choose from: {', '.join(by_name)})")
    fmt = by_name[wanted]
    if not fmt.applies_to(benchmark):
        usable = [f.name for f in _FORMATS if f.applies_to(benchmark)]
        raise CliError(
            f"prompt format {wanted!r} does not apply to benchmark {benchmark.name!r} "
            f"(use one of: {', '.join(usable)})"
        )
    return fmt.bind(benchmark, data_dir)


def load_mbpp_shots(data_dir: Path | None) -> list[Task]:
    """MBPP tasks 2, 3 and 4 (outside the test split) from the MBPP data file."""
    from codeserve.datasets import load_benchmark

    full = load_benchmark("mbpp-full", data_dir)
    return [full.task(f"Mbpp/{number}") for number in MBPP_SHOT_IDS]
