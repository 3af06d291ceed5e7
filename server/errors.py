"""Typed HTTP errors of the gateway. Raise these; the central handlers in `codeserve.server.app`
turn them into the one OpenAI error shape `{"error": {"message", "type", "param", "code"}}`, and
the CLI into one line."""

from __future__ import annotations

from typing import Any

from codeserve.common.error_object import error_object
from codeserve.common.errors import CodeserveError


class APIError(CodeserveError):
    status_code = 500
    error_type = "internal_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_object(self.message, self.error_type, param=self.param, code=self.code)


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class OverloadedError(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "overloaded"


class ModelNotReadyError(APIError):
    status_code = 503
    error_type = "service_unavailable"
    default_code = "model_not_ready"


class UnavailableError(APIError):
    status_code = 503
    error_type = "service_unavailable"
    default_code = "unavailable"


class EngineConnectionError(APIError):
    status_code = 502
    error_type = "upstream_error"
    default_code = "engine_unreachable"


class EngineTimeoutError(APIError):
    status_code = 504
    error_type = "upstream_error"
    default_code = "engine_timeout"


class UpstreamError(APIError):
    """An engine answered with an error; relayed with the engine's message and a mapped status."""

    error_type = "upstream_error"

    def __init__(
        self, status_code: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status_code = status_code
        if status_code < 500:
            self.error_type = "invalid_request_error"
