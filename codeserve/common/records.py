"""The record of one request to an OpenAI-compatible completions endpoint, as the eval harness
and the load tester both keep it: how many candidates it asked for, for which task, how it
ended (HTTP status, error) and the token usage the server reported.

Each tool extends it with its own timing, because the two measure different things on purpose:
the harness times a request from when it was actually sent (`client.protocol.Generation`),
the load tester times every candidate from when the request was meant to be sent, so a server
that falls behind shows its queueing (`loadtest.protocol.LoadtestRecord`).
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field


class RequestRecord(BaseModel):
    n: int  # candidates asked for
    task_id: str | None = None  # the benchmark task the prompt came from, if any
    # The HTTP status of the answer; None when none came (connection error, timeout).
    # Eval records written before this class existed call it `status_code`.
    status: int | None = Field(None, validation_alias=AliasChoices("status", "status_code"))
    error: str | None = None  # why the request failed; None when it succeeded
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # usage: all candidates together

    @property
    def ok(self) -> bool:
        return self.error is None
