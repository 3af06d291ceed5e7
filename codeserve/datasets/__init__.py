"""Benchmark datasets: `load_benchmark(name, data_dir=None) -> Benchmark`.

Names: humaneval, humaneval+, humaneval+mini, mbpp (test split, task_id 11-510), mbpp-full,
mbpp-sanitized, mbpp+, humaneval-infill-single, humaneval-infill-multi, humaneval-infill-random,
humaneval-infill-random-light. Files are found in `data_dir`, then the cache
(`CODESERVE_DATA_DIR`, default ~/.cache/codeserve/datasets), then inside installed packages, then
downloaded from the public release URL; every copy is checked against a pinned sha256.
Task ids: HumanEval/N, Mbpp/N (all MBPP variants), the infilling files' own ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from codeserve.datasets import loaders, sources
from codeserve.datasets.errors import DatasetError, UnknownBenchmarkError, UnknownTaskError
from codeserve.datasets.fetch import Downloader, locate
from codeserve.datasets.models import Benchmark, Family, Task
from codeserve.datasets.settings import DatasetSettings

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "DatasetError",
    "DatasetSettings",
    "Family",
    "Task",
    "UnknownBenchmarkError",
    "UnknownTaskError",
    "benchmark_names",
    "load_benchmark",
]


@dataclass(frozen=True)
class BenchmarkSpec:
    source: sources.SourceFile
    version: str
    family: Family
    parse: Callable[[Path], list[Task]]
    completion_includes_prompt: bool = True


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "humaneval": BenchmarkSpec(sources.HUMANEVAL, "1.0", Family.HUMANEVAL, loaders.humaneval_tasks),
    "humaneval+": BenchmarkSpec(
        sources.HUMANEVAL_PLUS, "v0.1.10", Family.PLUS, partial(loaders.plus_tasks, mbpp=False)
    ),
    "humaneval+mini": BenchmarkSpec(
        sources.HUMANEVAL_PLUS_MINI,
        "v0.1.10-mini",
        Family.PLUS,
        partial(loaders.plus_tasks, mbpp=False),
    ),
    "mbpp+": BenchmarkSpec(
        sources.MBPP_PLUS,
        "v0.2.0",
        Family.PLUS,
        partial(loaders.plus_tasks, mbpp=True),
        completion_includes_prompt=False,
    ),
    "mbpp": BenchmarkSpec(
        sources.MBPP, "test", Family.MBPP, partial(loaders.mbpp_tasks, split="test"), False
    ),
    "mbpp-full": BenchmarkSpec(
        sources.MBPP, "full", Family.MBPP, partial(loaders.mbpp_tasks, split="full"), False
    ),
    "mbpp-sanitized": BenchmarkSpec(
        sources.MBPP_SANITIZED,
        "sanitized",
        Family.MBPP,
        partial(loaders.mbpp_tasks, split="full"),
        False,
    ),
    "humaneval-infill-single": BenchmarkSpec(
        sources.INFILL_SINGLE, "1.0", Family.INFILL, loaders.humaneval_tasks
    ),
    "humaneval-infill-multi": BenchmarkSpec(
        sources.INFILL_MULTI, "1.0", Family.INFILL, loaders.humaneval_tasks
    ),
    "humaneval-infill-random": BenchmarkSpec(
        sources.INFILL_RANDOM, "1.0", Family.INFILL, loaders.humaneval_tasks
    ),
    "humaneval-infill-random-light": BenchmarkSpec(
        sources.INFILL_RANDOM_LIGHT, "1.0", Family.INFILL, loaders.humaneval_tasks
    ),
}


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def load_benchmark(
    name: str,
    data_dir: Path | str | None = None,
    *,
    settings: DatasetSettings | None = None,
    downloader: Downloader | None = None,
) -> Benchmark:
    """Load benchmark `name` (see module doc). Raises `UnknownBenchmarkError` for a bad name and
    `DatasetError` (one line: which file, where to put it) when the file is missing or corrupt."""
    spec = BENCHMARKS.get(name.lower())
    if spec is None:
        raise UnknownBenchmarkError(name, benchmark_names())
    path = locate(spec.source, Path(data_dir) if data_dir else None, settings, downloader)
    return Benchmark(
        name=name.lower(),
        version=spec.version,
        family=spec.family,
        source_file=path,
        sha256=spec.source.sha256,
        tasks=spec.parse(path),
        completion_includes_prompt=spec.completion_includes_prompt,
    )
