"""One eval run: ask an endpoint (or the oracle) for n candidates per task, save them as they
arrive, score them, and write results.json, samples.jsonl and the reports.

Files in the out dir:
  records.jsonl   every request (timings, usage, errors, candidates); reopened to resume
  samples.jsonl   one line per scored candidate: task_id, completion, passed, result
  results.json    `EvalResults`
  report.md, report.html
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import httpx
import orjson
from pydantic import BaseModel, Field
from tqdm import tqdm

from codeserve.client.endpoint import EndpointClient, EndpointConfig
from codeserve.client.protocol import (
    EvalRecord,
    EvalResults,
    RunIdentity,
    RunMetadata,
    SamplingParams,
)
from codeserve.client.records import RecordStore, candidates_per_task, samples_of
from codeserve.client.run_scoring import ScoredRun, score_run
from codeserve.client.run_stats import latency_summary, throughput
from codeserve.datasets import Benchmark, Task, load_benchmark
from codeserve.scoring.programs import canonical_completion
from codeserve.scoring.prompt_format import PromptFormat
from codeserve.scoring.prompts import ORACLE_FORMAT, resolve_format

RECORDS_FILE = "records.jsonl"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
MAX_ERRORS_SHOWN = 10


class EvalConfig(BaseModel):
    benchmark: str
    model: str
    endpoint: str | None = None
    oracle: bool = False
    n: int = Field(1, ge=1)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    limit: int | None = Field(None, ge=1)
    out_dir: Path
    prompt_format: str | None = None
    stream: bool = False
    concurrency: int = Field(8, ge=1)
    max_n_per_request: int | None = Field(None, ge=1)
    data_dir: Path | None = None
    api_key: str | None = None
    timeout_s: float = Field(600.0, gt=0)
    max_retries: int = Field(5, ge=0)
    progress: bool = True


class EvalOutcome(BaseModel):
    results: EvalResults
    out_dir: Path
    new_candidates: int


async def run_eval(
    config: EvalConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> EvalOutcome:
    """The whole run; scoring (CPU-bound sandboxes) runs in a worker thread."""
    started_at = _now()
    benchmark = load_benchmark(config.benchmark, config.data_dir)
    tasks = benchmark.tasks[: config.limit] if config.limit else list(benchmark.tasks)
    fmt = (
        None if config.oracle else resolve_format(config.prompt_format, benchmark, config.data_dir)
    )
    identity = RunIdentity(
        benchmark=benchmark.name,
        dataset_sha256=benchmark.sha256,
        model=config.model,
        prompt_format=fmt.name if fmt else ORACLE_FORMAT,
        temperature=config.sampling.temperature,
        top_p=config.sampling.top_p,
        max_tokens=config.sampling.max_tokens,
        oracle=config.oracle,
    )
    session = uuid.uuid4().hex[:12]
    with RecordStore.open(config.out_dir / RECORDS_FILE, identity) as store:
        before = sum(store.candidates_done().values())
        if fmt is None:
            _write_oracle(benchmark, tasks, config.n, store, session)
        else:
            await _generate(config, fmt, tasks, store, session, transport)
        new = sum(store.candidates_done().values()) - before
        wanted = {task.task_id for task in tasks}
        records = [r for r in store.records if r.task_id in wanted]
    samples = samples_of(records, config.n)
    scored = await asyncio.to_thread(score_run, benchmark, tasks, samples)
    results = _results(config, benchmark, tasks, identity, records, scored, started_at)
    _write_outputs(config.out_dir, results, scored)
    return EvalOutcome(results=results, out_dir=config.out_dir, new_candidates=new)


def _write_oracle(
    benchmark: Benchmark, tasks: Sequence[Task], n: int, store: RecordStore, session: str
) -> None:
    """Canonical solutions as the samples: proves datasets, programs and scoring end to end."""
    done = store.candidates_done()
    for task in tasks:
        missing = n - done[task.task_id]
        if missing > 0:
            solutions = [canonical_completion(benchmark, task)] * missing
            store.append(
                EvalRecord(
                    task_id=task.task_id,
                    session=session,
                    n=missing,
                    texts=solutions,
                    completions=solutions,
                    sent_at=time.time(),
                )
            )


async def _generate(
    config: EvalConfig,
    fmt: PromptFormat,
    tasks: Sequence[Task],
    store: RecordStore,
    session: str,
    transport: httpx.AsyncBaseTransport | None,
) -> None:
    done = store.candidates_done()
    chunk = config.max_n_per_request or config.n
    queue: asyncio.Queue[tuple[Task, int]] = asyncio.Queue()
    for task in tasks:
        missing = config.n - min(done[task.task_id], config.n)
        while missing > 0:
            queue.put_nowait((task, min(chunk, missing)))
            missing -= chunk
    if queue.empty():
        return
    endpoint = EndpointConfig(
        base_url=config.endpoint or "",
        model=config.model,
        api_key=config.api_key,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        max_n_per_request=config.max_n_per_request,
        stream=config.stream,
        max_connections=config.concurrency,
    )
    async with EndpointClient(endpoint, transport=transport) as client:
        await client.check_model()
        # The bar starts once the endpoint answered: a fatal check is then one line alone.
        already = sum(min(done[t.task_id], config.n) for t in tasks)
        bar = tqdm(
            total=len(tasks) * config.n,
            initial=already,
            unit="cand",
            file=sys.stderr,
            disable=not config.progress,
            desc=f"{config.benchmark} {config.model}",
        )

        async def worker() -> None:
            while not queue.empty():
                task, count = queue.get_nowait()
                request = fmt.build(task)
                for generation in await client.complete(request, config.sampling, count):
                    completions = (
                        [fmt.to_completion(text, task) for text in generation.texts]
                        if generation.ok
                        else []
                    )
                    store.append(
                        EvalRecord(
                            **generation.model_dump(exclude={"task_id"}),
                            task_id=task.task_id,
                            session=session,
                            completions=completions,
                        )
                    )
                    bar.update(len(completions))

        workers = [asyncio.ensure_future(worker()) for _ in range(config.concurrency)]
        try:
            # The first worker to fail (e.g. the endpoint rejects the key) stops all the others.
            finished, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for future in finished:
                future.result()
        finally:
            for future in workers:
                future.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            bar.close()


def _results(
    config: EvalConfig,
    benchmark: Benchmark,
    tasks: Sequence[Task],
    identity: RunIdentity,
    records: Sequence[EvalRecord],
    scored: ScoredRun,
    started_at: str,
) -> EvalResults:
    done = candidates_per_task(records)
    missing = {t.task_id: config.n - done[t.task_id] for t in tasks if done[t.task_id] < config.n}
    metadata_ = RunMetadata(
        identity=identity,
        endpoint=None if config.oracle else config.endpoint,
        dataset_name=benchmark.name,
        dataset_version=benchmark.version,
        n=config.n,
        limit=config.limit,
        tasks=len(tasks),
        stream=config.stream,
        concurrency=config.concurrency,
        max_n_per_request=config.max_n_per_request,
        tool_version=tool_version(),
        started_at=started_at,
        finished_at=_now(),
    )
    return EvalResults(
        metadata=metadata_,
        pass_at_k=scored.pass_at_k,
        complete=not missing,
        missing_samples=missing,
        errors=dict(Counter(r.error for r in records if r.error).most_common(MAX_ERRORS_SHOWN)),
        tasks=scored.tasks,
        verdict_mode=scored.verdict_mode,
        latency=latency_summary(records),
        throughput=throughput(records),
    )


def _write_outputs(out_dir: Path, results: EvalResults, scored: ScoredRun) -> None:
    from codeserve.client.report import write_reports

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / SAMPLES_FILE).open("wb") as handle:
        for sample in scored.samples:
            handle.write(orjson.dumps(sample.model_dump()) + b"\n")
    (out_dir / RESULTS_FILE).write_bytes(
        orjson.dumps(results.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
    )
    write_reports(results, out_dir)


def tool_version() -> str:
    try:
        return metadata.version("codeserve")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
