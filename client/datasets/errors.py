"""Typed dataset errors: CLI ones print as one line, API ones map to the OpenAI error object."""

from __future__ import annotations

from server.errors import CliError, InvalidRequestError


class DatasetError(CliError):
    """A benchmark file is missing, unreadable or fails its checksum."""


class UnknownBenchmarkError(InvalidRequestError):
    default_code = "unknown_benchmark"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown benchmark {name!r}; choose one of: {', '.join(known)}", param="benchmark"
        )


class UnknownTaskError(InvalidRequestError):
    default_code = "unknown_task"

    def __init__(self, benchmark: str, task_id: str) -> None:
        super().__init__(f"benchmark {benchmark!r} has no task {task_id!r}", param="task_id")
