"""Expected outputs, kept in the harness: what a task's candidates are called on and compared with.

Every benchmark is scored the same way (the "harness" verdict mode): a candidate's process
only computes its entry point's outputs on the task's inputs (a sandbox "call" job, see
codeserve.sandbox.calls) and the harness compares them with the expected outputs here, which
never reach a sandbox worker. `TaskOracle` holds one task's inputs, expected outputs and how
to compare them; `Oracle` computes them for a whole benchmark once, by running the canonical
solutions in the sandbox (trusted code), and caches them on disk per dataset sha256:

- HumanEval+/MBPP+ (codeserve.scoring.plus_oracle): the dataset's inputs, compared as evalplus
  does (float tolerance, special oracles, per-input time limits).
- HumanEval, infilling, MBPP (codeserve.scoring.assert_oracle): the calls the task's own
  assert-based checks make, recorded with the canonical solution, each compared the way its
  assert compares (==, truthiness, `is`, abs(...) < tol, math.isclose, set(...)/tuple(...)).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from codeserve.datasets import Benchmark
from codeserve.sandbox import calls, values
from codeserve.sandbox.calls import CallCase
from codeserve.sandbox.candidate_exec import Digest, Opaque, PlusCase
from codeserve.sandbox.pool import Job, RunResult, SandboxPool

log = logging.getLogger(__name__)
# 4: harness-side expected outputs (TaskOracle), digests of the values encoding; assert-based
# benchmarks too; 5: canonical times include digesting the output
FORMAT_VERSION = 5
# How much of the cache (pickled bytes) a harness keeps loaded, most recently used first: all of
# an assert-based benchmark (~0.1-5 MB), a part of HumanEval+'s (~20 MB).
LOADED_BYTES = 8 << 20
# A task's inputs travel with each of its jobs up to this size (the zygote loads them once,
# and no job waits for a bundle's round trip); bigger ones (HumanEval+/MBPP+) are bundles.
INLINE_CASE_MAX = 64 << 10


class Mode(NamedTuple):
    """How one input's output is compared (assert-based tests: as its assert compares it).
    kind: "eq" (==), "truthy"/"falsy" (assert f(x) / assert not f(x)), "is" (f(x) is True),
    "close" (abs(f(x) - y) < tol, `strict` for < rather than <=), "isclose" (math.isclose with
    rel and tol as abs_tol), "set"/"tuple"/"list"/"sorted" (set(f(x)) == ...), "find_zero"
    (|poly(xs, f(xs))| < tol)."""

    kind: str = "eq"
    tol: float = 0.0
    rel: float = 0.0
    strict: bool = True


class Part(NamedTuple):
    """A slice [first, stop) of a task's inputs judged as one job, with its wall limit (0: the
    scorer's) and the per-input time limits of the slice (none: the wall limit alone)."""

    first: int
    stop: int
    timeout: float
    limits: tuple[float, ...] = ()


class TaskOracle:
    """One task as the harness judges it: inputs (argument lists; where `exprs` has an index,
    the source of its arguments, evaluated after `setup` in the candidate's process), expected
    outputs (values, or a Digest when too big to send), and how to compare them: `modes` per
    input for assert-based tests, else the evalplus rules (`atol`, `oracle`).
    `time_limits` are per input (empty: the job's wall-clock limit alone); `lines` the line of
    the checks each input came from (assert-based), for verdict details."""

    def __init__(
        self,
        task_id: str,
        entry_point: str,
        inputs: Sequence[list[Any] | None],
        base_count: int,
        expected: list[Any],
        *,
        exprs: dict[int, str] | None = None,
        setup: str = "",
        atol: float = 0.0,
        oracle: str = "",
        modes: list[Mode] | None = None,
        time_limits: list[float] | None = None,
        lines: list[int] | None = None,
    ) -> None:
        self.task_id = task_id
        self.entry_point = entry_point
        self.inputs = list(inputs)
        self.base_count = base_count
        self.expected = expected
        self.exprs = exprs or {}
        self.setup = setup
        self.atol = atol
        self.oracle = oracle
        self.modes = modes
        self.time_limits = time_limits or []
        self.lines = lines
        self._records: list[bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_records"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._records = None

    def truths(self) -> frozenset[int]:
        """Inputs whose assert only looks at the output's truth value."""
        if self.modes is None:
            return frozenset()
        return frozenset(i for i, m in enumerate(self.modes) if m.kind in ("truthy", "falsy"))

    def call_case(self) -> CallCase:
        """What the workers get: the inputs only."""
        return CallCase(
            self.entry_point,
            [a if a is not None else [] for a in self.inputs],
            self.setup,
            self.exprs,
            presence=self.oracle == "not_none",
            truths=self.truths(),
        )

    def plus_case(self) -> PlusCase:
        """For the in-process verdict mode (HumanEval+/MBPP+): inputs and expected outputs,
        which that mode sends to the workers."""
        return PlusCase(
            entry_point=self.entry_point,
            inputs=[a if a is not None else [] for a in self.inputs],
            base_count=self.base_count,
            atol=self.atol,
            oracle=self.oracle,
            expected=self.expected,
            time_limits=self.time_limits,
        )

    def label(self, index: int) -> str:
        if self.lines is not None:
            return f"test input {index} (line {self.lines[index]} of the tests)"
        if index < self.base_count:
            return f"base input {index}"
        return f"plus input {index - self.base_count}"

    def records(self) -> list[bytes]:
        """Each input's expected record, as a candidate writes it when its output is the same
        value of the same types (b"" where that says nothing, e.g. NaN): comparing bytes
        decides most candidates without decoding anything."""
        if self._records is None:
            truths = self.truths()
            self._records = [
                _expected_record(i, exp, i in truths) for i, exp in enumerate(self.expected)
            ]
        return self._records


def _expected_record(index: int, expected: Any, truth: bool = False) -> bytes:
    if isinstance(expected, Digest):
        return b""  # compared by digest alone (codeserve.scoring.judge)
    if truth:
        return calls.record(b"B" + index.to_bytes(4, "big") + values.encode(bool(expected)))
    try:
        data = values.encode_or_digest(expected)
        if isinstance(data, tuple):
            return calls.digest_record(index, *data)
        if values.decode(data) != expected:  # NaN inside: equal bytes would not mean ==
            return b""
    except (values.Refused, ValueError):
        return b""
    return calls.record(b"V" + index.to_bytes(4, "big") + data)


def atomic_write(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # expected outputs: for the harness's user alone
    os.replace(tmp, path)


class Oracle:
    """The TaskOracles of one benchmark, computed once (`compute`, by subclasses) and cached in
    `cache_dir` as `<stem>.cases.pkl` (one pickled TaskOracle per task, concatenated) and
    `<stem>.meta.json` (offsets, failures, parts; written last = cache complete). Registers
    with the pool, per task, a bundle (the inputs) and a judge (codeserve.scoring.judge)."""

    kind = "oracle"

    def __init__(self, benchmark: Benchmark, pool: SandboxPool, cache_dir: Path) -> None:
        self.benchmark = benchmark
        self.pool = pool
        self.cache_dir = cache_dir
        self.failures: dict[str, str] = {}  # task_id -> why no expected outputs exist
        self._cases_path: Path | None = None
        self._offsets: dict[str, tuple[int, int]] = {}
        self._parts: dict[str, list[Part]] = {}
        self._loaded: OrderedDict[str, TaskOracle] = OrderedDict()
        self._inline: dict[str, bytes | None] = {}
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    # -- computing and caching ---------------------------------------------------------------
    def compute(self) -> dict[str, TaskOracle]:
        raise NotImplementedError

    def plan(self, oracle: TaskOracle) -> list[tuple[int, int, float]]:
        """The jobs one candidate is judged in: [(first, stop, timeout)] (0 = the scorer's)."""
        return [(0, len(oracle.inputs), 0.0)]

    def _parts_of(self, oracle: TaskOracle) -> list[Part]:
        return [Part(a, b, t, tuple(oracle.time_limits[a:b])) for a, b, t in self.plan(oracle)]

    def _stem(self) -> str:
        return f"{self.benchmark.name}-{self.benchmark.sha256[:16]}-v{FORMAT_VERSION}"

    def ensure(self) -> None:
        with self._lock:  # concurrent requests must not compute the same outputs twice
            if self._cases_path is None:
                for folder in (self.cache_dir.expanduser(), None):
                    try:
                        self._load_or_compute(
                            folder or Path(tempfile.mkdtemp(prefix="codeserve-oracle-"))
                        )
                        return
                    except OSError as exc:
                        log.warning(
                            "cannot cache expected outputs in %s (%s); using a temp dir",
                            folder,
                            exc,
                        )

    def _load_or_compute(self, folder: Path) -> None:
        cases_path = folder / f"{self._stem()}.cases.pkl"
        meta_path = folder / f"{self._stem()}.meta.json"
        if not (meta_path.is_file() and cases_path.is_file()):
            oracles = self.compute()
            parts = {tid: self._parts_of(o) for tid, o in oracles.items()}
            blobs = {
                tid: pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for tid, o in oracles.items()
            }
            offsets, pos = {}, 0
            for tid, blob in blobs.items():
                offsets[tid] = (pos, len(blob))
                pos += len(blob)
            atomic_write(b"".join(blobs.values()), cases_path)
            meta = {"failures": self.failures, "parts": parts, "offsets": offsets}
            atomic_write(json.dumps(meta).encode(), meta_path)
        meta = json.loads(meta_path.read_text())
        self.failures = meta["failures"]
        self._parts = {
            tid: [Part(a, b, t, tuple(limits)) for a, b, t, limits in plan]
            for tid, plan in meta["parts"].items()
        }
        self._offsets = {k: tuple(v) for k, v in meta["offsets"].items()}
        self._cases_path = cases_path

    def task(self, task_id: str) -> TaskOracle:
        """One task's oracle (the last used stay loaded, up to LOADED_BYTES of the cache)."""
        self.ensure()
        with self._load_lock:
            oracle = self._loaded.get(task_id)
            if oracle is not None:
                self._loaded.move_to_end(task_id)
                return oracle
        offset, length = self._offsets[task_id]
        assert self._cases_path is not None
        with self._cases_path.open("rb") as f:
            f.seek(offset)
            oracle = pickle.loads(f.read(length))  # our own cache file
        with self._load_lock:
            self._loaded[task_id] = oracle
            kept = sum(self._offsets[t][1] for t in self._loaded)
            while len(self._loaded) > 1 and kept > LOADED_BYTES:
                kept -= self._offsets[self._loaded.popitem(last=False)[0]][1]
        return oracle

    def parts(self, task_id: str, default_timeout: float) -> list[Part]:
        """The jobs one candidate of `task_id` is judged in: input slices with wall limits."""
        self.ensure()
        plan = self._parts.get(task_id) or [Part(0, 0, 0.0)]
        return [p._replace(timeout=p.timeout or default_timeout) for p in plan]

    # -- what jobs name ----------------------------------------------------------------------
    def inline_case(self, task_id: str) -> bytes | None:
        """`task_id`'s CallCase to send with each job (calls.case_bytes), when small enough."""
        if task_id not in self._inline:
            data = calls.case_bytes(self.task(task_id).call_case())
            self._inline[task_id] = data if len(data) <= INLINE_CASE_MAX else None
        return self._inline[task_id]

    def bundle_key(self, task_id: str, in_process: bool = False) -> str:
        """The pool key of `task_id`'s bundle, registered: a CallCase (inputs only), or for the
        in-process mode a PlusCase (inputs and expected outputs, sent to the workers). Call
        jobs' judges are registered under the same key (codeserve.scoring.scorer)."""
        self.ensure()
        key = f"{self._stem()}:{'plus' if in_process else 'call'}:{task_id}"
        if in_process:
            self.pool.register_bundle(key, lambda: pickle.dumps(self.task(task_id).plus_case()))
        else:
            self.pool.register_bundle(key, lambda: pickle.dumps(self.task(task_id).call_case()))
        return key

    # -- helpers for subclasses --------------------------------------------------------------
    def run_all(self, jobs: list[Job]) -> list[RunResult]:
        results: list[RunResult | None] = [None] * len(jobs)
        for i, result in self.pool.run_many(jobs):
            results[i] = result
        return results  # type: ignore[return-value]


class OutputUnpickler(pickle.Unpickler):
    """Canonical outputs are plain data; refuse anything that would run code on load."""

    _ALLOWED = {
        ("builtins", n) for n in ("set", "frozenset", "complex", "bytearray", "slice", "range")
    }
    _ALLOWED |= {("collections", n) for n in ("OrderedDict", "defaultdict", "Counter", "deque")}
    _ALLOWED |= {
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("codeserve.sandbox.candidate_exec", "Digest"),
        ("codeserve.sandbox.candidate_exec", "Opaque"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a sandbox result")


def load_outputs(payload: bytes) -> dict[str, Any]:
    import io

    return OutputUnpickler(io.BytesIO(payload)).load()


def not_plain(value: Any) -> str | None:
    """Why an expected output cannot be compared by the harness, if it cannot."""
    if isinstance(value, Opaque):
        return f"not plain data ({value.text})"
    if isinstance(value, Digest):
        return None
    try:
        values.encode_or_digest(value)
    except values.Refused as exc:
        return str(exc)
    return None
