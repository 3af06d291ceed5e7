"""IDE "keystroke" traffic: what an autocomplete plugin does to an endpoint while someone types.

Each simulated user types code into a hole of a real program (HumanEval's, or synthetic lines
without its data file): a few characters every 50-300 ms, in bursts of a few keystrokes with a
pause to read the suggestion between bursts. Every keystroke sends a streamed FIM request
(`prompt` = the text up to the cursor, `suffix` = the rest of the file after the hole) and
cancels the user's previous request, as plugins do: the connection is closed, so the gateway
aborts the engine's generation.

Reported: TTFT p50/p99 of the requests that were not cancelled (the ones a user waits for), the
share cancelled (and cancelled before their first token), and waste: tokens streamed to
requests that were then cancelled. Those are counted as text chunks received (one token per
chunk unless the engine decodes speculatively, when a chunk can hold several): a lower bound of
the engine's waste, which also includes tokens generated between the cancel and the abort.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from pydantic import BaseModel, Field

from codeserve.common.records import RequestRecord
from codeserve.common.sse import DONE, SSEDecoder
from codeserve.common.stats import Distribution, distribution

_WORDS = [
    "value",
    "total",
    "items",
    "result",
    "index",
    "count",
    "name",
    "data",
    "line",
    "text",
    "node",
    "left",
    "right",
    "key",
    "first",
    "last",
    "size",
    "step",
]


class KeystrokeSpec(BaseModel):
    base_url: str  # OpenAI-compatible, ending in /v1
    model: str
    api_key: str | None = Field(None, exclude=True)
    users: int = Field(4, ge=1)
    duration_s: float = Field(60.0, gt=0)
    max_tokens: int = Field(32, ge=1)
    temperature: float | None = 0.0
    gap_ms: tuple[float, float] = (50.0, 300.0)  # between keystrokes of a burst
    chars: tuple[int, int] = (1, 4)  # typed per keystroke
    burst: tuple[int, int] = (2, 8)  # keystrokes before the user pauses
    pause_s: tuple[float, float] = (0.5, 2.0)  # reading the suggestion, once it is complete
    timeout_s: float = Field(60.0, gt=0)
    seed: int = 0


class KeystrokeRecord(RequestRecord):
    """One keystroke's request (one candidate); times are seconds, `sent_s` from the run's
    start, the others from `sent_s`."""

    n: int = 1
    user: int
    sent_s: float
    ttft_s: float | None = None
    done_s: float | None = None
    cancelled: bool = False
    tokens: int = 0  # text chunks received


class KeystrokeSummary(BaseModel):
    duration_s: float
    source: str
    requests: int
    completed: int
    cancelled: int
    cancelled_share: float
    cancelled_before_first_token: int
    errors: dict[str, int] = Field(default_factory=dict)
    ttft_ms: Distribution  # requests not cancelled
    e2e_ms: Distribution  # requests not cancelled
    tokens_completed: int
    tokens_wasted: int  # streamed to requests that were then cancelled
    waste_share: float  # of all tokens streamed


class KeystrokeResult(BaseModel):
    kind: str = "keystroke"
    spec: KeystrokeSpec
    summary: KeystrokeSummary


@dataclass(frozen=True)
class Document:
    """A program with a hole the user types: `before` + `hole` + `after`."""

    before: str
    hole: str
    after: str


def humaneval_documents(data_dir: Path | None) -> list[Document] | None:
    """Holes of two to four lines inside HumanEval's programs; None without its data file."""
    from codeserve.datasets import load_benchmark
    from codeserve.datasets.errors import DatasetError

    try:
        benchmark = load_benchmark("humaneval", data_dir)
    except DatasetError:
        return None
    docs = []
    for i, task in enumerate(benchmark.tasks):
        lines = (task.prompt + task.canonical_solution).splitlines(keepends=True)
        body = len(task.prompt.splitlines())
        if len(lines) - body < 2:
            continue
        start = body + i % max(len(lines) - body - 1, 1)
        end = min(start + 2 + i % 3, len(lines))
        docs.append(
            Document("".join(lines[:start]), "".join(lines[start:end]), "".join(lines[end:]))
        )
    return docs


def synthetic_documents(seed: int, count: int = 64) -> list[Document]:
    rng = random.Random(seed)

    def line() -> str:
        return f"    {rng.choice(_WORDS)} = {rng.choice(_WORDS)} + {rng.choice(_WORDS)}\n"

    return [
        Document(
            f"def f{i}(items):\n" + "".join(line() for _ in range(8)),
            "".join(line() for _ in range(3)),
            "    return total\n",
        )
        for i in range(count)
    ]


class _User:
    def __init__(
        self,
        index: int,
        spec: KeystrokeSpec,
        docs: list[Document],
        http: httpx.AsyncClient,
        clock: float,
        records: list[KeystrokeRecord],
    ) -> None:
        self.index = index
        self.spec = spec
        self.docs = docs
        self.http = http
        self.clock = clock
        self.records = records
        self.rng = random.Random(spec.seed * 1000 + index)

    def now(self) -> float:
        return time.perf_counter() - self.clock

    async def run(self, end: float) -> None:
        inflight: asyncio.Task[None] | None = None
        try:
            while self.now() < end:
                doc = self.rng.choice(self.docs)
                typed = 0
                while typed < len(doc.hole) and self.now() < end:
                    for _ in range(self.rng.randint(*self.spec.burst)):
                        typed = min(len(doc.hole), typed + self.rng.randint(*self.spec.chars))
                        if inflight is not None and not inflight.done():
                            inflight.cancel()  # the plugin drops the stale request
                        record = KeystrokeRecord(user=self.index, sent_s=self.now())
                        self.records.append(record)
                        inflight = asyncio.create_task(
                            self._request(record, doc.before + doc.hole[:typed], doc.after)
                        )
                        if typed >= len(doc.hole) or self.now() >= end:
                            break
                        await asyncio.sleep(self.rng.uniform(*self.spec.gap_ms) / 1000)
                    if inflight is not None:  # the user waits for the suggestion, then reads
                        await asyncio.wait({inflight})
                    await asyncio.sleep(
                        min(self.rng.uniform(*self.spec.pause_s), max(end - self.now(), 0))
                    )
        finally:
            if inflight is not None and not inflight.done():
                inflight.cancel()
                await asyncio.gather(inflight, return_exceptions=True)

    async def _request(self, record: KeystrokeRecord, prompt: str, suffix: str) -> None:
        body = {
            "model": self.spec.model,
            "prompt": prompt,
            "suffix": suffix,
            "max_tokens": self.spec.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.spec.temperature is not None:
            body["temperature"] = self.spec.temperature
        try:
            async with self.http.stream("POST", "/completions", content=orjson.dumps(body)) as resp:
                record.status = resp.status_code
                if resp.status_code != 200:
                    await resp.aread()
                    record.error = f"http_{resp.status_code}"
                    return
                decoder = SSEDecoder(lambda data: self._event(record, data))
                async for piece in resp.aiter_bytes():
                    decoder.feed(piece)
                    if record.error:
                        return
            record.done_s = self.now() - record.sent_s
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__

    def _event(self, record: KeystrokeRecord, data: bytes) -> None:
        if data == DONE or record.error:
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            record.error = "bad_chunk"
            return
        if "error" in chunk:
            record.error = "stream_error"
            return
        if any(c.get("text") for c in chunk.get("choices") or []):
            if record.ttft_s is None:
                record.ttft_s = self.now() - record.sent_s
            record.tokens += 1
        usage = chunk.get("usage")
        if usage:
            record.tokens = int(usage.get("completion_tokens") or record.tokens)


async def run_keystroke(spec: KeystrokeSpec, data_dir: Path | None = None) -> KeystrokeResult:
    docs = humaneval_documents(data_dir)
    source = "humaneval" if docs else "synthetic"
    if not docs:
        docs = synthetic_documents(spec.seed)
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    records: list[KeystrokeRecord] = []
    limits = httpx.Limits(max_connections=spec.users * 4, max_keepalive_connections=spec.users)
    async with httpx.AsyncClient(
        base_url=spec.base_url.rstrip("/"), headers=headers, timeout=spec.timeout_s, limits=limits
    ) as http:
        clock = time.perf_counter()
        users = [_User(i, spec, docs, http, clock, records) for i in range(spec.users)]
        await asyncio.gather(*(u.run(spec.duration_s) for u in users))
        elapsed = time.perf_counter() - clock
    return KeystrokeResult(spec=spec, summary=summarize(records, elapsed, source))


def summarize(records: list[KeystrokeRecord], elapsed: float, source: str) -> KeystrokeSummary:
    completed = [r for r in records if r.done_s is not None and not r.cancelled]
    cancelled = [r for r in records if r.cancelled]
    errors: dict[str, int] = {}
    for r in records:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    wasted = sum(r.tokens for r in cancelled)
    kept = sum(r.tokens for r in completed)
    return KeystrokeSummary(
        duration_s=elapsed,
        source=source,
        requests=len(records),
        completed=len(completed),
        cancelled=len(cancelled),
        cancelled_share=len(cancelled) / len(records) if records else 0,
        cancelled_before_first_token=sum(r.ttft_s is None for r in cancelled),
        errors=errors,
        ttft_ms=distribution((r.ttft_s for r in completed if r.ttft_s is not None), 1000),
        e2e_ms=distribution((r.done_s for r in completed if r.done_s is not None), 1000),
        tokens_completed=kept,
        tokens_wasted=wasted,
        waste_share=wasted / (wasted + kept) if wasted + kept else 0.0,
    )


def render(result: KeystrokeResult) -> str:
    s = result.summary

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = [
        f"keystroke: {result.spec.users} users, {s.duration_s:.0f} s, {s.source} code, "
        f"model {result.spec.model}",
        f"  requests {s.requests}  completed {s.completed}  cancelled {s.cancelled} "
        f"({s.cancelled_share:.0%}; {s.cancelled_before_first_token} before their first token)",
        f"  TTFT of requests not cancelled: p50 {ms(s.ttft_ms.p50)} ms  p99 {ms(s.ttft_ms.p99)} "
        f"ms  (end-to-end p50 {ms(s.e2e_ms.p50)} ms)",
        f"  tokens: {s.tokens_completed} for completed requests, {s.tokens_wasted} streamed to "
        f"cancelled ones (waste {s.waste_share:.0%})",
    ]
    if s.errors:
        lines.append("  errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(s.errors.items())))
    return "\n".join(lines)
