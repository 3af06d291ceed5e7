"""What a prompt format is: the request one task becomes, and the base class every format
(`codeserve.scoring.prompts`, `codeserve.scoring.fim_prompts`) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from codeserve.common.chat import ChatMessage
from codeserve.datasets.models import Benchmark, Task

PromptKind = Literal["completion", "chat"]


class PromptRequest(BaseModel):
    """What one task asks of the endpoint: a completion prompt (optionally with a FIM `suffix`)
    or chat messages, plus the stop sequences of its prompt format."""

    kind: PromptKind
    prompt: str | None = None
    suffix: str | None = None
    messages: list[ChatMessage] | None = None
    stop: list[str] = Field(default_factory=list)


def truncate_at_stops(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(stop) for stop in stops) if i >= 0), default=len(text))
    return text[:cut]


class PromptFormat(ABC):
    name: str
    kind: PromptKind
    summary: str
    stops: tuple[str, ...] = ()

    @abstractmethod
    def applies_to(self, benchmark: Benchmark) -> bool:
        """Whether tasks of this benchmark can be asked in this format."""

    @abstractmethod
    def build(self, task: Task) -> PromptRequest:
        """The request for one task."""

    def bind(self, benchmark: Benchmark, data_dir: Path | None) -> PromptFormat:
        """This format ready for one benchmark's tasks (formats needing context override it)."""
        return self

    def to_completion(self, text: str, task: Task) -> str:
        """What the scorer gets for one candidate: by default the text up to the first stop."""
        return truncate_at_stops(text, self.stops)

    def _completion_request(self, prompt: str) -> PromptRequest:
        return PromptRequest(kind="completion", prompt=prompt, stop=list(self.stops))
