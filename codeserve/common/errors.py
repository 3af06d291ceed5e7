"""Domain errors every layer raises. None of them is an HTTP error: the gateway's central handlers
map the ones a request can cause to the OpenAI error object, and the CLI prints any of them as
one line."""

from __future__ import annotations


class CodeserveError(Exception):
    """Base of every error Codeserve raises on purpose."""


class CliError(CodeserveError):
    """A user-facing command-line failure: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(CliError):
    """Invalid settings or models file (names the field and, where known, the line)."""


class InvalidInputError(CodeserveError):
    """A caller asked for something that cannot be done (an unknown benchmark, an empty list).
    The gateway answers 400 with `param` and `code`; the CLI prints one line."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
