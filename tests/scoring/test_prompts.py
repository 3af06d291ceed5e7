"""Prompt formats per benchmark: requests, stops, completions the scorer can run."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeserve.common.errors import CliError
from codeserve.datasets import Benchmark, load_benchmark
from codeserve.scoring.prompts import (
    HUMANEVAL_STOPS,
    default_format_name,
    format_names,
    resolve_format,
    truncate_at_stops,
)


@pytest.fixture(scope="module")
def benchmarks(data_dir: Path) -> dict[str, Benchmark]:
    return {
        name: load_benchmark(name, data_dir)
        for name in ("humaneval", "humaneval+", "mbpp", "mbpp+")
    }


def test_defaults_are_the_conventional_base_model_formats(benchmarks: dict[str, Benchmark]) -> None:
    assert {name: default_format_name(b) for name, b in benchmarks.items()} == {
        "humaneval": "humaneval",
        "humaneval+": "humaneval",
        "mbpp": "mbpp-docstring",
        "mbpp+": "mbpp-plus",
    }


def test_humaneval_prompt_is_the_task_prompt_with_bigcode_stops(
    benchmarks: dict[str, Benchmark],
) -> None:
    task = benchmarks["humaneval"].tasks[0]
    request = resolve_format("humaneval", benchmarks["humaneval"]).build(task)
    assert request.kind == "completion" and request.prompt == task.prompt
    assert request.stop == list(HUMANEVAL_STOPS)
    fmt = resolve_format(None, benchmarks["humaneval"])
    assert fmt.to_completion("    return 1\n\ndef other():\n    pass", task) == "    return 1\n"


def test_mbpp_docstring_prompt_has_text_and_first_assert(benchmarks: dict[str, Benchmark]) -> None:
    task = benchmarks["mbpp"].task("Mbpp/11")
    request = resolve_format("mbpp-docstring", benchmarks["mbpp"]).build(task)
    assert request.prompt == f'"""\n{task.text}\n{task.test_list[0]}\n"""\n'
    assert "\nassert" in request.stop


def test_mbpp_three_shot_uses_tasks_2_to_4_and_stops_at_done(
    benchmarks: dict[str, Benchmark], data_dir: Path
) -> None:
    fmt = resolve_format("mbpp-3shot", benchmarks["mbpp"], data_dir)
    task = benchmarks["mbpp"].task("Mbpp/11")
    prompt = fmt.build(task).prompt or ""
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3
    assert (
        "similar_elements" in prompt and "is_not_prime" in prompt and "heap_queue_largest" in prompt
    )
    assert prompt.endswith(f"{task.test_list[2]}\n[BEGIN]\n") and "\r" not in prompt
    assert fmt.build(task).stop == ["[DONE]"]
    assert fmt.to_completion("def f():\n  return 1\n[DONE]\nmore", task) == "def f():\n  return 1\n"


def test_mbpp_plus_prompt_is_its_prompt_field(benchmarks: dict[str, Benchmark]) -> None:
    task = benchmarks["mbpp+"].tasks[0]
    assert resolve_format(None, benchmarks["mbpp+"]).build(task).prompt == task.prompt


def test_chat_format_extracts_code_for_each_benchmark_shape(
    benchmarks: dict[str, Benchmark],
) -> None:
    he = benchmarks["humaneval"]
    task = he.tasks[0]
    fmt = resolve_format("chat", he)
    request = fmt.build(task)
    assert (
        request.kind == "chat"
        and request.messages
        and task.prompt.strip() in request.messages[0].content
    )
    answer = f"Here:\n```python\n{task.prompt}{task.canonical_solution}\nprint(1)\n```"
    completion = fmt.to_completion(answer, task)
    assert completion.startswith("\n") and "print(1)" not in completion
    # Runs as prompt + completion, like the scorer does.
    scope: dict[str, object] = {}
    exec(task.prompt + completion + "\n" + task.test + f"\ncheck({task.entry_point})", scope)

    mbpp = benchmarks["mbpp"]
    mtask = mbpp.task("Mbpp/11")
    mfmt = resolve_format("chat", mbpp)
    assert mtask.test_list[0] in (mfmt.build(mtask).messages or [])[0].content
    mcode = mfmt.to_completion(f"```python\n{mtask.canonical_solution}\n```", mtask)
    assert not mcode.startswith("\n") and f"def {mtask.entry_point}" in mcode


def test_unknown_or_inapplicable_format_is_a_one_line_error(
    benchmarks: dict[str, Benchmark],
) -> None:
    with pytest.raises(CliError, match="unknown prompt format 'nope'"):
        resolve_format("nope", benchmarks["humaneval"])
    with pytest.raises(CliError, match="does not apply to benchmark 'humaneval'.*humaneval, chat"):
        resolve_format("mbpp-3shot", benchmarks["humaneval"])
    assert set(format_names()) >= {"humaneval", "mbpp-docstring", "mbpp-3shot", "mbpp-plus", "chat"}


def test_truncate_at_the_earliest_stop() -> None:
    assert truncate_at_stops("a\nprint(x)\ndef y", ["\ndef", "\nprint"]) == "a"
    assert truncate_at_stops("abc", []) == "abc"
