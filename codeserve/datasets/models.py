"""Benchmark and task records shared by the scorer and the eval harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Family(str, Enum):
    """How a benchmark's programs are built (see `codeserve.scoring.programs`)."""

    HUMANEVAL = "humaneval"  # prompt + completion + test + check(entry_point)
    INFILL = "infill"  # prompt + completion + suffix + test + check(entry_point)
    MBPP = "mbpp"  # completion + test_setup_code/imports + asserts
    PLUS = "plus"  # extra inputs compared against the canonical solution's outputs


@dataclass
class Task:
    """One benchmark problem.

    Common fields: `task_id`, `prompt` (what a model is shown; for MBPP the problem text),
    `entry_point` (the function under test), `canonical_solution` (for HumanEval the body that
    follows the prompt; for MBPP/MBPP+ complete code; for infilling the canonical middle), `test`.
    Benchmark-specific fields default to empty values when they do not apply.
    """

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str = ""
    # MBPP family
    text: str = ""
    test_list: list[str] = field(default_factory=list)
    test_setup_code: str = ""
    challenge_test_list: list[str] = field(default_factory=list)
    test_imports: list[str] = field(default_factory=list)
    # HumanEval+/MBPP+: argument lists (already deserialised), tolerance and input contract
    base_inputs: list[list[Any]] = field(default_factory=list)
    plus_inputs: list[list[Any]] = field(default_factory=list)
    atol: float = 0.0
    contract: str = ""
    # Infilling: the code after the hole (the canonical middle is `canonical_solution`)
    suffix: str = ""

    @property
    def canonical_middle(self) -> str:
        """Infilling alias: the canonical text of the hole."""
        return self.canonical_solution


@dataclass
class Benchmark:
    """A loaded benchmark: identity of the exact file it came from, and its tasks in file order."""

    name: str
    version: str
    family: Family
    source_file: Path
    sha256: str
    tasks: list[Task]
    # For Plus benchmarks: programs are `prompt + completion` (HumanEval+) or the completion alone.
    completion_includes_prompt: bool = True
    _index: dict[str, Task] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {t.task_id: t for t in self.tasks}

    def task(self, task_id: str) -> Task:
        """The task with this id; KeyError if the benchmark has none."""
        return self._index[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._index

    def __len__(self) -> int:
        return len(self.tasks)
