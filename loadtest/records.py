"""Per-request timing while an SSE response streams in, and the record it becomes.

Candidates of an n>1 request arrive interleaved (`choices[].index`), so every index keeps its own
first/last chunk time and gaps. A chunk counts as a token when it carries text; a trailing
chunk with only a finish reason ends the candidate (its E2E) without counting as a token.
"""

from __future__ import annotations

from typing import Any

import orjson

from codeserve.common.sse import DONE, SSEDecoder
from codeserve.loadtest.protocol import CandidateRecord


class _Candidate:
    __slots__ = ("first", "last", "prev", "chunks", "gaps", "finish", "parts")

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.prev: float | None = None
        self.chunks = 0
        self.gaps: list[float] = []
        self.finish: str | None = None
        self.parts: list[str] = []


class StreamTimer:
    """Feed it raw response bytes with their arrival time; every SSE event is stamped with the
    arrival of the read that completed it, also when one read holds several events."""

    def __init__(self, n: int, keep_text: bool = False) -> None:
        self.n = n
        self.keep_text = keep_text
        self.done = False
        self.error: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self._by_index: dict[int, _Candidate] = {}
        self._now = 0.0  # arrival time of the bytes being read
        self._sse = SSEDecoder(self._event)

    def feed(self, data: bytes, now: float) -> None:
        self._now = now
        self._sse.feed(data)

    def _event(self, data: bytes) -> None:
        if data == DONE:
            self.done = True
            return
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error = self.error or "bad_chunk"
            return
        self._message(message, self._now)

    def _message(self, message: dict[str, Any], now: float) -> None:
        if "error" in message:
            self.error = self.error or "stream_error"
            return
        usage = message.get("usage")
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens")
            self.completion_tokens = usage.get("completion_tokens")
        for choice in message.get("choices") or ():
            cand = self._by_index.get(choice.get("index", 0))
            if cand is None:
                cand = self._by_index[choice.get("index", 0)] = _Candidate()
            text = choice.get("text")
            if text is None:
                text = (choice.get("delta") or {}).get("content")
            if text:
                if cand.first is None:
                    cand.first = now
                else:
                    cand.gaps.append(now - cand.prev)  # type: ignore[operator]
                cand.prev = now
                cand.chunks += 1
                if self.keep_text:
                    cand.parts.append(text)
            cand.last = now
            if choice.get("finish_reason"):
                cand.finish = choice["finish_reason"]

    def outcome_error(self) -> str | None:
        """Why the response is not a complete answer, or None."""
        if self.error:
            return self.error
        if not self.done:
            return "incomplete_stream"
        if len(self._by_index) < self.n or any(c.finish is None for c in self._by_index.values()):
            return "missing_candidates"
        return None

    def _token_counts(self) -> dict[int, int]:
        """Chunks per candidate, rescaled to `usage` when chunks are not one token each
        (usage only gives the total over all candidates)."""
        chunks = {i: c.chunks for i, c in self._by_index.items()}
        total = sum(chunks.values())
        usage = self.completion_tokens
        if not usage or not total or usage == total:
            return chunks
        return {i: round(k * usage / total) for i, k in chunks.items()}

    def candidates(self, origin: float) -> list[CandidateRecord]:
        """Per-index records with times relative to `origin` (the intended send time)."""
        tokens = self._token_counts()
        out = []
        for index in sorted(self._by_index):
            c = self._by_index[index]
            out.append(
                CandidateRecord.model_construct(
                    index=index,
                    ttft_s=None if c.first is None else c.first - origin,
                    e2e_s=None if c.last is None else c.last - origin,
                    chunks=c.chunks,
                    tokens=tokens[index],
                    finish_reason=c.finish,
                    itl_s=c.gaps,
                    text="".join(c.parts) if self.keep_text else None,
                )
            )
        return out
