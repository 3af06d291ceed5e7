"""The one chat message shape: the gateway validates chat requests with it, and the eval harness
and load tester build chat prompts with it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ChatMessage(BaseModel):
    # Strict and tolerant of unknown fields, like every OpenAI request shape the gateway accepts.
    model_config = ConfigDict(extra="ignore", protected_namespaces=(), strict=True)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
