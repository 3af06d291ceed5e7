"""The OpenAI error object, `{"error": {"message", "type", "param", "code"}}`.

The gateway answers every failure with it (and ends a stream that breaks with it), and the mock
vLLM upstream answers with it, so its shape is stated here once: `ErrorResponse` is also the
schema the gateway's OpenAPI document gives for error responses, and `error_object` is the only
place that builds one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    # The gateway's codes are strings ("model_not_found"); vLLM's are the HTTP status, and its
    # mid-stream errors reach clients as vLLM wrote them.
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_object(
    message: str, type_: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    """The error object as a JSON-ready dict."""
    detail = ErrorDetail(message=message, type=type_, param=param, code=code)
    return ErrorResponse(error=detail).model_dump()
