"""Stop sequences beyond what the engine accepts.

vLLM (like OpenAI) takes at most 4 stop strings, while code-eval conventions use 7-12 (the bigcode
HumanEval set has 7). The gateway sends the first ones to the engine, which stops generating there,
and enforces the rest itself: it cuts each candidate's text at the earliest extra stop, reports
`finish_reason: "stop"`, and for streams drops the rest of a stopped candidate and closes the engine
stream early once every candidate has stopped, so the engine does not keep generating for nobody.
"""

from __future__ import annotations

from typing import Any


def split_stops(stops: list[str], engine_limit: int) -> tuple[list[str], list[str]]:
    return stops[:engine_limit], stops[engine_limit:]


def earliest_stop(text: str, stops: list[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return best


def _holder(choice: dict[str, Any], field: str, streaming: bool) -> dict[str, Any]:
    """The dict that carries a choice's text: the choice itself for completions (`text`), its
    `message` (or streamed `delta`) for chat (`content`)."""
    if field == "text":
        return choice
    inner = choice.get("delta" if streaming else "message")
    return inner if isinstance(inner, dict) else {}


def trim_choices(choices: list[dict[str, Any]], stops: list[str], field: str = "text") -> None:
    """Cut complete (non-streamed) choices at the earliest extra stop."""
    for choice in choices:
        holder = _holder(choice, field, streaming=False)
        text = holder.get(field)
        if not isinstance(text, str):
            continue
        hit = earliest_stop(text, stops)
        if hit is not None:
            holder[field] = text[: hit[0]]
            choice["finish_reason"] = "stop"
            choice["stop_reason"] = hit[1]


class StreamStops:
    """Applies extra stops to a stream of completion chunks, candidate by candidate.

    Up to `len(longest stop) - 1` characters of each candidate are held back, because a stop can
    span two chunks; they are released as soon as they cannot start a stop, or at the end.
    """

    def __init__(self, stops: list[str], candidates: int, field: str = "text") -> None:
        self.stops = stops
        self.field = field
        self.hold = max(len(s) for s in stops) - 1
        self.candidates = candidates
        self.pending: dict[int, str] = {}
        self.stopped: set[int] = set()
        self.cut = 0  # candidates stopped here, whose generation the engine would continue

    @property
    def all_stopped(self) -> bool:
        return len(self.stopped) >= self.candidates

    @property
    def should_abort(self) -> bool:
        """Every candidate is done and the engine is still generating for some of them."""
        return self.all_stopped and self.cut > 0

    def feed(self, chunk: dict[str, Any]) -> bool:
        """Rewrites `chunk` in place; False when nothing of it is left to send."""
        kept = []
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            if index in self.stopped:
                continue
            holder = _holder(choice, self.field, streaming=True)
            text = self.pending.pop(index, "") + (holder.get(self.field) or "")
            finished = choice.get("finish_reason") is not None
            hit = earliest_stop(text, self.stops)
            if hit is not None:
                holder[self.field] = text[: hit[0]]
                choice["finish_reason"] = "stop"
                choice["stop_reason"] = hit[1]
                self.stopped.add(index)
                self.cut += 1
            elif finished:
                holder[self.field] = text
                self.stopped.add(index)
            else:
                keep = self._safe_prefix(text)
                holder[self.field] = text[:keep]
                if keep < len(text):
                    self.pending[index] = text[keep:]
            if holder.get(self.field) or choice.get("finish_reason") is not None:
                kept.append(choice)
        if "choices" in chunk and not chunk["choices"]:
            return True  # the usage chunk
        chunk["choices"] = kept
        return bool(kept)

    def _safe_prefix(self, text: str) -> int:
        """Length of the prefix of `text` that no stop can still start inside."""
        start = max(0, len(text) - self.hold)
        for i in range(start, len(text)):
            tail = text[i:]
            if any(stop.startswith(tail) for stop in self.stops):
                return i
        return len(text)
