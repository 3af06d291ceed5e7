"""The one error a model source raises: printed by the CLI as one line, no traceback."""

from __future__ import annotations

from codeserve.common.errors import CliError


class ModelSourceError(CliError):
    """Download, checksum, disk space or conversion failure of a model source.

    `unreachable` marks a download that failed (no package index, or it lacks the release):
    the built-in defaults may fall back to demo models then, never on a checksum failure."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
