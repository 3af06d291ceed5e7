"""Settings helpers every layer's settings classes share."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def split_commas(value: Any) -> Any:
    """A list given in the environment as "a,b" or as a JSON list."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return json.loads(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# Lists given in the environment as "a,b" (or a JSON list).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]


class ApiKeySettings(BaseSettings):
    """The bearer token the eval harness and the load tester send: `CODESERVE_API_KEY`, else
    `OPENAI_API_KEY`; a `--api-key` flag overrides both. (The gateway's accepted keys are its own
    setting, `CODESERVE_API_KEYS`.)"""

    model_config = SettingsConfigDict(extra="ignore")

    api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("CODESERVE_API_KEY", "OPENAI_API_KEY")
    )
