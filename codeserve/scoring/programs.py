"""Build the program that judges one (task, completion) pair, per benchmark family.

- HumanEval: prompt + completion + "\\n" + test + "\\n" + check(entry_point)
- Infilling: prompt + completion + suffix + "\\n" + test + "\\n" + check(entry_point)
- MBPP: completion + test_imports + test_setup_code + the asserts of test_list
  (+ challenge_test_list when asked); task 367 only passes with its test_setup_code.
- HumanEval+/MBPP+: the code only (prompt + completion for HumanEval+, the completion alone for
  MBPP+); the worker then calls entry_point on every extra input (`codeserve.sandbox.candidate_exec`).
"""

from __future__ import annotations

from codeserve.datasets import Benchmark, Family, Task


def build_program(
    benchmark: Benchmark, task: Task, completion: str, challenge_tests: bool = False
) -> str:
    """Source to run for `completion` of `task` (for Plus: the code defining the entry point)."""
    return "".join(build_parts(benchmark, task, completion, challenge_tests))


def build_parts(
    benchmark: Benchmark, task: Task, completion: str, challenge_tests: bool = False
) -> tuple[str, str]:
    """`build_program` split in two: (code, tests). `code` holds the completion; `tests` is the
    task's own checking code, the same for every candidate ("" for Plus), which a sandbox worker
    compiles once rather than once per candidate. When `tests` is not empty,
    `code` is empty or ends with a newline."""
    family = benchmark.family
    if family is Family.HUMANEVAL:
        return f"{task.prompt}{completion}\n", f"{task.test}\n\ncheck({task.entry_point})\n"
    if family is Family.INFILL:
        return (
            f"{task.prompt}{completion}{task.suffix}\n",
            f"{task.test}\n\ncheck({task.entry_point})\n",
        )
    if family is Family.MBPP:
        tests = task.test_list + (task.challenge_test_list if challenge_tests else [])
        checks = [p for p in (*task.test_imports, task.test_setup_code, *tests) if p]
        if not checks:
            return f"{completion}\n", ""
        return f"{completion}\n" if completion else "", "\n".join(checks) + "\n"
    return (task.prompt + completion if benchmark.completion_includes_prompt else completion), ""


def canonical_completion(benchmark: Benchmark, task: Task) -> str:
    """The completion that reproduces the reference solution (the middle, for infilling)."""
    return task.canonical_solution


def job_kind(benchmark: Benchmark) -> str:
    return "plus" if benchmark.family is Family.PLUS else "exec"
