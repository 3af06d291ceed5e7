"""What the load tester sends: a pool of request bodies, encoded before the run starts so the
sender spends nothing on them, and a seeded draw from the pool per request.

Prompts are synthetic (random common words, one BPE token each in the usual code-model
vocabularies, so `prompt_tokens` is close to the real count) or come from a benchmark through
`codeserve.datasets` and `codeserve.scoring.prompts`, the same prompts the eval harness sends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from codeserve.common.errors import CliError
from codeserve.loadtest.protocol import WorkloadSpec

# Frequent English words: single tokens, with the leading space, in GPT-2/StarCoder/Qwen BPEs.
_WORDS = (
    "the of and to in is for that on with as it be this by are or from at an not have which "
    "but all can has one more if will their new other some when there what only also time into "
    "its two use first used then these any way may after over such most many where each well "
    "should value list return number string file data code line type name function class test"
).split()


@dataclass(frozen=True)
class PreparedRequest:
    """One pool entry: the exact body bytes and what the records need to know about it."""

    body: bytes
    fim: bool
    prompt_tokens: int | None
    task_id: str | None = None


@dataclass(frozen=True)
class Workload:
    spec: WorkloadSpec
    pool: list[PreparedRequest]
    benchmark: Any = None  # codeserve.datasets.Benchmark when prompts came from one
    prompt_format: Any = None  # its codeserve.scoring.prompts.PromptFormat (None for infilling)

    def pick(self, rng: random.Random) -> PreparedRequest:
        return self.pool[rng.randrange(len(self.pool))]


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def _body(
    spec: WorkloadSpec,
    model: str,
    prompt: str,
    suffix: str | None,
    stop: list[str],
    messages: list[dict[str, str]] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": spec.max_tokens,
        "n": spec.n,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if spec.endpoint == "chat":
        body["messages"] = messages or [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
        if suffix is not None:
            body["suffix"] = suffix
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    if spec.min_tokens is not None:
        body["min_tokens"] = spec.min_tokens
    if spec.ignore_eos:
        body["ignore_eos"] = True
    if spec.stop or stop:
        body["stop"] = spec.stop or stop
    return orjson.dumps(body)


def synthetic_workload(spec: WorkloadSpec, model: str, seed: int) -> Workload:
    rng = random.Random(seed)
    pool = []
    for _ in range(spec.pool_size):
        fim = rng.random() < spec.fim_fraction
        prompt = _words(rng, spec.prompt_tokens)
        suffix = _words(rng, spec.suffix_tokens) if fim else None
        tokens = spec.prompt_tokens + (spec.suffix_tokens if fim else 0)
        pool.append(PreparedRequest(_body(spec, model, prompt, suffix, []), fim, tokens))
    return Workload(spec, pool)


def _split_for_fim(code: str, rng: random.Random) -> tuple[str, str]:
    """A hole at a random line boundary of a complete program."""
    lines = code.splitlines(keepends=True)
    cut = rng.randrange(1, len(lines)) if len(lines) > 1 else 1
    return "".join(lines[:cut]), "".join(lines[cut:])


def benchmark_workload(
    spec: WorkloadSpec, model: str, seed: int, data_dir: Path | None
) -> Workload:
    """Every task of the benchmark (or its first `max_tasks`) once; `pool_size` is ignored."""
    from codeserve.datasets import Family, load_benchmark
    from codeserve.scoring.prompts import resolve_format

    benchmark = load_benchmark(spec.source, data_dir)
    rng = random.Random(seed)
    infill = benchmark.family is Family.INFILL
    fmt = None
    if not infill:
        fmt = resolve_format("chat" if spec.endpoint == "chat" else None, benchmark, data_dir)
    elif spec.endpoint == "chat":
        raise CliError(
            f"benchmark {spec.source!r} is fill-in-the-middle; use the completions endpoint"
        )
    pool = []
    for task in benchmark.tasks[: spec.max_tasks]:
        fim = infill or rng.random() < spec.fim_fraction
        messages, stop, suffix = None, [], None
        if infill:
            prompt, suffix = task.prompt, task.suffix
        elif fim:
            prompt, suffix = _split_for_fim(task.prompt + task.canonical_solution, rng)
        else:
            assert fmt is not None
            request = fmt.build(task)
            prompt, stop = request.prompt or "", list(request.stop)
            if request.messages:
                messages = [m.model_dump(exclude_none=True) for m in request.messages]
        body = _body(spec, model, prompt, suffix, stop, messages)
        pool.append(PreparedRequest(body, fim, None, task.task_id))
    return Workload(spec, pool, benchmark, fmt)


def build_workload(
    spec: WorkloadSpec, model: str, seed: int, data_dir: Path | None = None
) -> Workload:
    if spec.source == "synthetic":
        return synthetic_workload(spec, model, seed)
    return benchmark_workload(spec, model, seed, data_dir)
