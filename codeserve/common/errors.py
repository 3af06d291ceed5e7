"""Domain errors every layer raises. None of them is an HTTP error: the gateway's central handlers
map the ones a request can cause to the OpenAI error object, and the CLI prints any of them as
one line. `validation_message` is the one way a pydantic validation failure becomes that line."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol


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


# Labels pydantic puts into an error's location for the member of a union it tried
# ("constrained-str", "list[int]", "function-after[...]"): they name a type, not a field.
_UNION_MEMBER = re.compile(
    r"(?:constrained-)?(?:str|int|float|bool|bytes|none|dict|list)|[a-z][a-z-]*\[.*\]"
)


class _HasErrors(Protocol):
    """pydantic's ValidationError, and FastAPI's RequestValidationError (not a subclass)."""

    def errors(self) -> Sequence[Mapping[str, Any]]: ...


def error_location(error: Mapping[str, Any], drop: Collection[str] = ()) -> tuple[int | str, ...]:
    """The path of the field one pydantic error is about, as the user wrote it: without the
    union-member labels pydantic adds and without the parts in `drop` (a tagged union's tag
    values, FastAPI's "body")."""
    return tuple(
        part
        for part in error.get("loc", ())
        if not (isinstance(part, str) and (part in drop or _UNION_MEMBER.fullmatch(part)))
    )


def validation_message(exc: _HasErrors, drop: Collection[str] = ()) -> str:
    """A validation failure as the one line users see: `field.path: what is wrong`, and how
    many other fields are wrong too. Every place that reports a ValidationError (settings,
    models file, request bodies, results files) says it this way, so they read alike."""
    errors = exc.errors()
    if not errors:
        return "invalid input"
    where = error_location(errors[0], drop)
    path = ".".join(map(str, where)) or "(top level)"
    # A union reports every member it tried; errors at or under the same path are one problem.
    others = {
        loc
        for loc in (error_location(e, drop) for e in errors[1:])
        if loc[: len(where)] != where and where[: len(loc)] != loc
    }
    more = f" (+{len(others)} more)" if others else ""
    return f"{path}: {errors[0].get('msg', 'invalid')}{more}"
