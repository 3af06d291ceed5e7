"""Expected outputs for HumanEval+/MBPP+: run each canonical solution in the sandbox once, cache.

The cache (one per dataset sha256) holds, per task, a pickled `PlusCase`: the inputs, the canonical
outputs and per-input time limits max(min_time, factor x canonical time) as evalplus does. A
worker receives a task's slice the first time it judges a candidate of that task.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from codeserve.datasets import Benchmark, Task
from codeserve.sandbox.candidate_exec import PlusCase
from codeserve.sandbox.pool import Job, RunResult, SandboxPool
from codeserve.scoring.programs import build_program, canonical_completion

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: huge text outputs stored as digests

# Tasks whose outputs cannot be compared directly (evalplus' special oracles).
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}
MBPP_SET_EQ = {
    "similar_elements",
    "find_char_long",
    "common_in_nested_lists",
    "extract_singly",
    "larg_nnum",
    "intersection_array",
    "find_dissimilar",
    "Diff",
}


class Part(NamedTuple):
    """A slice [first, stop) of a task's inputs judged as one job, with its wall limit."""

    first: int
    stop: int
    timeout: float


class PlusSettings(BaseSettings):
    """Where expected outputs are cached and how per-input time limits are derived
    (env prefix CODESERVE_PLUS_)."""

    model_config = SettingsConfigDict(env_prefix="CODESERVE_PLUS_", extra="ignore")

    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "codeserve" / "plus")
    min_time_limit_s: float = 4.0
    time_limit_factor: float = 4.0
    task_timeout_s: float = Field(60.0, description="cap on one candidate's total input time")
    truth_timeout_s: float = Field(300.0, description="limit for one canonical run over all inputs")
    part_s: float = Field(1.0, description="canonical seconds per job when a slow task is split")
    # evalplus allows 4 GiB; Mbpp/255's canonical output alone is ~1.6M tuples.
    memory_mb: int = Field(4096, description="address space a Plus candidate may add")


def oracle_for(benchmark: Benchmark, task: Task) -> str:
    if benchmark.name.startswith("mbpp"):
        if task.entry_point in MBPP_NOT_NONE:
            return "not_none"
        if task.entry_point in MBPP_SET_EQ:
            return "set_eq"
        return ""
    return "find_zero" if task.entry_point == "find_zero" else ""


def _case(benchmark: Benchmark, task: Task) -> PlusCase:
    return PlusCase(
        entry_point=task.entry_point,
        inputs=task.base_inputs + task.plus_inputs,
        base_count=len(task.base_inputs),
        atol=task.atol,
        oracle=oracle_for(benchmark, task),
    )


class _OutputUnpickler(pickle.Unpickler):
    """Canonical outputs are plain data; refuse anything that would run code on load."""

    _ALLOWED = {
        ("builtins", n) for n in ("set", "frozenset", "complex", "bytearray", "slice", "range")
    }
    _ALLOWED |= {("collections", n) for n in ("OrderedDict", "defaultdict", "Counter", "deque")}
    _ALLOWED |= {
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("codeserve.sandbox.candidate_exec", "Digest"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a sandbox result")


def load_outputs(payload: bytes) -> dict[str, list[Any]]:
    return _OutputUnpickler(io.BytesIO(payload)).load()


def _atomic_write(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # sandbox workers may run as another user
    os.replace(tmp, path)


class PlusOracle:
    """Expected outputs and time limits of one Plus benchmark; jobs reference `bundle_key(id)`."""

    def __init__(
        self, benchmark: Benchmark, pool: SandboxPool, settings: PlusSettings | None = None
    ) -> None:
        self.benchmark = benchmark
        self.pool = pool
        self.settings = settings or PlusSettings()
        self.failures: dict[str, str] = {}  # task_id -> why no expected outputs exist
        self._cases_path: Path | None = None
        self._offsets: dict[str, tuple[int, int]] = {}
        self._parts: dict[str, list[Part]] = {}
        self._canonical_times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _stem(self) -> str:
        return f"{self.benchmark.name}-{self.benchmark.sha256[:16]}-v{FORMAT_VERSION}"

    def bundle_key(self, task_id: str) -> str:
        """Pool bundle key of one task's inputs + expected outputs (what its "plus" jobs name),
        computing and caching all expected outputs on first use."""
        self._ensure()
        key = f"{self._stem()}:{task_id}"
        self.pool.register_bundle(key, lambda: self._read_slice(task_id))
        return key

    def _ensure(self) -> None:
        """Cache files: `<stem>.cases.pkl` (one pickled PlusCase per task, concatenated) and
        `<stem>.meta.json` (offsets, failures, timeouts; written last = cache complete)."""
        with self._lock:  # concurrent requests must not compute the same outputs twice
            if self._cases_path is None:
                self._load_or_compute_somewhere()

    def _load_or_compute_somewhere(self) -> None:
        for folder in (self.settings.cache_dir.expanduser(), None):
            try:
                self._load_or_compute(folder or Path(tempfile.mkdtemp(prefix="codeserve-plus-")))
                return
            except OSError as exc:
                log.warning(
                    "cannot cache expected outputs in %s (%s); using a temp dir", folder, exc
                )

    def _load_or_compute(self, folder: Path) -> None:
        cases_path = folder / f"{self._stem()}.cases.pkl"
        meta_path = folder / f"{self._stem()}.meta.json"
        if not (meta_path.is_file() and cases_path.is_file()):
            cases = self._compute()
            parts = {tid: self._plan(tid, c) for tid, c in cases.items()}
            blobs = {
                tid: pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for tid, c in cases.items()
            }
            offsets, pos = {}, 0
            for tid, blob in blobs.items():
                offsets[tid] = (pos, len(blob))
                pos += len(blob)
            _atomic_write(b"".join(blobs.values()), cases_path)
            meta = {"failures": self.failures, "parts": parts, "offsets": offsets}
            _atomic_write(json.dumps(meta).encode(), meta_path)
        meta = json.loads(meta_path.read_text())
        self.failures = meta["failures"]
        self._parts = {tid: [Part(*p) for p in plan] for tid, plan in meta["parts"].items()}
        self._offsets = {k: tuple(v) for k, v in meta["offsets"].items()}
        self._cases_path = cases_path

    def _read_slice(self, task_id: str) -> bytes:
        offset, length = self._offsets[task_id]
        assert self._cases_path is not None
        with self._cases_path.open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def _compute(self) -> dict[str, PlusCase]:
        cases = {t.task_id: _case(self.benchmark, t) for t in self.benchmark.tasks}
        keys = {tid: f"{self._stem()}-inputs:{tid}" for tid in cases}
        for tid, key in keys.items():
            self.pool.register_bundle(
                key, functools.partial(pickle.dumps, cases[tid], protocol=pickle.HIGHEST_PROTOCOL)
            )
        jobs = [
            Job(
                kind="truth",
                program=build_program(self.benchmark, t, canonical_completion(self.benchmark, t)),
                timeout=self.settings.truth_timeout_s,
                bundle=keys[t.task_id],
                memory_mb=self.settings.memory_mb,
            )
            for t in self.benchmark.tasks
        ]
        try:
            for i, result in self.pool.run_many(jobs):
                tid = self.benchmark.tasks[i].task_id
                self._record(cases[tid], tid, result)
        finally:
            for key in keys.values():
                self.pool.drop_bundle(key)
        return cases

    def _record(self, case: PlusCase, task_id: str, result: RunResult) -> None:
        if not result.passed:
            self.failures[task_id] = f"canonical solution {result.status}: {result.detail}"
            return
        try:
            truth = load_outputs(result.payload)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            self.failures[task_id] = f"canonical outputs unreadable: {exc}"
            return
        case.expected = truth["outputs"]
        self._canonical_times[task_id] = truth["times"]
        s = self.settings
        case.time_limits = [
            max(s.min_time_limit_s, s.time_limit_factor * t) for t in truth["times"]
        ]

    def _plan(self, task_id: str, case: PlusCase) -> list[tuple[int, int, float]]:
        """Split a task whose canonical run is slow into parts of about `part_s` canonical
        seconds, run as separate jobs (in parallel on several workers); each part's wall limit
        is its per-input limits summed, capped, plus 1 s (evalplus' rule per task)."""
        times = self._canonical_times.get(task_id, [])
        bounds, start, acc = [], 0, 0.0
        for i, t in enumerate(times):
            if acc and acc + t > self.settings.part_s:
                bounds.append((start, i))
                start, acc = i, 0.0
            acc += t
        bounds.append((start, len(case.inputs)))
        cap = self.settings.task_timeout_s
        return [(a, b, min(cap, sum(case.time_limits[a:b])) + 1.0) for a, b in bounds]

    def parts(self, task_id: str) -> list[Part]:
        """The jobs one candidate of `task_id` is judged in: input slices with wall limits."""
        self._ensure()
        return self._parts.get(task_id) or [Part(0, 0, self.settings.task_timeout_s + 1.0)]
