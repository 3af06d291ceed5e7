"""validation_message: the one line every layer prints for a pydantic validation failure."""

from __future__ import annotations

from typing import Literal

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from codeserve.common.errors import error_location, validation_message


class Engine(BaseModel):
    kind: Literal["managed"]
    max_model_len: int = Field(gt=0)


class Model(BaseModel):
    name: str
    stream: bool = False
    prompt: str | list[int] = ""
    engine: Engine | None = None


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Model.model_validate(data)
    return caught.value


def test_names_the_field_path_and_the_problem() -> None:
    exc = _error({"name": "m", "engine": {"kind": "managed", "max_model_len": -1}})
    assert validation_message(exc) == "engine.max_model_len: Input should be greater than 0"


def test_union_member_labels_are_not_fields_but_field_names_like_them_are() -> None:
    exc = _error({"name": "m", "prompt": [[]]})
    assert error_location(exc.errors()[0]) == ("prompt",)
    # Every union member failed, yet it is one problem: no "(+N more)".
    assert validation_message(exc).startswith("prompt: ") and "more" not in validation_message(exc)
    assert validation_message(_error({"name": "m", "stream": "maybe"})).startswith("stream: ")


def test_counts_the_other_fields_and_names_the_top_level() -> None:
    assert validation_message(_error({"stream": "maybe"})).endswith("Field required (+1 more)")
    assert validation_message(_error([])).startswith("(top level): ")


def test_drops_the_given_parts_and_reads_fastapi_errors() -> None:
    exc = RequestValidationError([{"loc": ("body", "n"), "msg": "too big", "type": "x"}])
    assert validation_message(exc, drop=("body",)) == "n: too big"
    assert validation_message(RequestValidationError([])) == "invalid input"
