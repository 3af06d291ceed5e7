"""Expected outputs for HumanEval+/MBPP+: run each canonical solution in the sandbox once, cache.

Each task's inputs are the dataset's (base inputs, then the extra ones); the expected outputs
are the canonical solution's, computed by a "truth" job (trusted code) and kept in the harness
(codeserve.scoring.oracle); per-input time limits are max(min_time, factor x canonical time)
as evalplus does, and a slow task's inputs are split into parts judged as separate jobs.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from codeserve.datasets import Benchmark, Task
from codeserve.sandbox.candidate_exec import PlusCase
from codeserve.sandbox.pool import Job, RunResult, SandboxPool
from codeserve.scoring.oracle import Oracle, Part, TaskOracle, load_outputs, not_plain
from codeserve.scoring.programs import build_program, canonical_completion

__all__ = ["PlusOracle", "PlusSettings", "load_outputs", "oracle_for"]

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


class PlusOracle(Oracle):
    """Expected outputs and time limits of one Plus benchmark."""

    def __init__(
        self, benchmark: Benchmark, pool: SandboxPool, settings: PlusSettings | None = None
    ) -> None:
        self.settings = settings or PlusSettings()
        super().__init__(benchmark, pool, self.settings.cache_dir)
        self._times: dict[str, list[float]] = {}  # canonical seconds per input, while computing

    def compute(self) -> dict[str, TaskOracle]:
        cases = {
            t.task_id: PlusCase(
                entry_point=t.entry_point,
                inputs=t.base_inputs + t.plus_inputs,
                base_count=len(t.base_inputs),
                atol=t.atol,
                oracle=oracle_for(self.benchmark, t),
            )
            for t in self.benchmark.tasks
        }
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
            results = self.run_all(jobs)
        finally:
            for key in keys.values():
                self.pool.drop_bundle(key)
        oracles = {}
        for task, result in zip(self.benchmark.tasks, results):
            oracle = self._oracle(cases[task.task_id], task.task_id, result)
            if oracle is not None:
                oracles[task.task_id] = oracle
        return oracles

    def _oracle(self, case: PlusCase, task_id: str, result: RunResult) -> TaskOracle | None:
        if not result.passed:
            self.failures[task_id] = f"canonical solution {result.status}: {result.detail}"
            return None
        try:
            truth = load_outputs(result.payload)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            self.failures[task_id] = f"canonical outputs unreadable: {exc}"
            return None
        for i, out in enumerate(truth["outputs"]):
            why = not_plain(out)
            if why is not None:
                self.failures[task_id] = f"canonical output of input {i}: {why}"
                return None
        s = self.settings
        self._times[task_id] = truth["times"]
        return TaskOracle(
            task_id,
            case.entry_point,
            case.inputs,
            case.base_count,
            truth["outputs"],
            atol=case.atol,
            oracle=case.oracle,
            time_limits=[max(s.min_time_limit_s, s.time_limit_factor * t) for t in truth["times"]],
        )

    def plan(self, oracle: TaskOracle) -> list[tuple[int, int, float]]:
        """Split a task whose canonical run is slow into parts of about `part_s` canonical
        seconds, run as separate jobs (in parallel on several workers); each part's wall limit
        is its per-input limits summed, capped, plus 1 s (evalplus' rule per task)."""
        s = self.settings
        times = self._times.get(oracle.task_id, [])
        bounds, start, acc = [], 0, 0.0
        for i, t in enumerate(times):
            if acc and acc + t > s.part_s:
                bounds.append((start, i))
                start, acc = i, 0.0
            acc += t
        bounds.append((start, len(oracle.inputs)))
        cap = s.task_timeout_s
        return [(a, b, min(cap, sum(oracle.time_limits[a:b])) + 1.0) for a, b in bounds]

    def parts(self, task_id: str, default_timeout: float = 0.0) -> list[Part]:
        return super().parts(task_id, self.settings.task_timeout_s + 1.0)
