"""error_object: the one builder of the OpenAI error object."""

from __future__ import annotations

from codeserve.common.error_object import ErrorResponse, error_object


def test_has_every_field_and_validates_as_the_documented_schema() -> None:
    body = error_object("no such model", "invalid_request_error", code="model_not_found")
    assert body == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    # vLLM's codes are HTTP statuses; the mock upstream sends those.
    assert error_object("busy", "rate_limit_error", param="n", code=429)["error"]["code"] == 429
    assert ErrorResponse.model_validate(body).error.code == "model_not_found"
