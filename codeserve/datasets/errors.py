"""Typed dataset errors. Domain errors, not HTTP ones: the CLI prints them as one line, and the
gateway maps an unknown benchmark or task to a 400."""

from __future__ import annotations

from codeserve.common.errors import CliError, InvalidInputError


class DatasetError(CliError):
    """A benchmark file is missing, unreadable or fails its checksum."""


class UnknownBenchmarkError(InvalidInputError):
    code = "unknown_benchmark"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown benchmark {name!r}; choose one of: {', '.join(known)}", param="benchmark"
        )


class UnknownTaskError(InvalidInputError):
    code = "unknown_task"

    def __init__(self, benchmark: str, task_id: str) -> None:
        super().__init__(f"benchmark {benchmark!r} has no task {task_id!r}", param="task_id")
