"""The sandbox zygote: a lean, warm interpreter that forks one process per candidate.

`codeserve.sandbox.forkserver` sets up a worker's isolation and then execs this module (as PID 1 of the
worker's PID namespace when there is one), so the heap that every candidate's fork copies holds
only what candidates need: no pathlib, pydantic or harness modules, and with the C loop no
ctypes. Fork, exit and copy-on-write faults cost in proportion to that heap (on a 2-core VM, the
old heap of ~11 MB of anonymous memory made them most of a candidate's cost).

The zygote forks a child per job, enforces the wall-clock limit itself and, when the child
finishes or times out, SIGKILLs every other process in its namespace (kill(-1) from PID 1), so
setsid daemons and fork bombs die with their candidate. If the zygote dies, the kernel kills the
whole namespace; if the harness dies, the worker and the zygote follow via PR_SET_PDEATHSIG.

As PID 1, the job loop runs in C (`codeserve/sandbox/_zygote_loop.c`, built at install when a compiler is
there): it forks, sets up and supervises each candidate without creating Python objects in the
zygote, runs a plain ("exec") job's harness-compiled program and tests in the child itself, and
calls back here for the rest (control frames, new checking code, Plus jobs, verdicts other than
a silent pass, a dirty scratch directory). `Zygote.serve`'s Python loop does the same
steps, and is used when that module is missing, switched off, or without a PID namespace.

Verdicts are not made here for call jobs (the default verdict mode): their child only writes
its outputs (codeserve.sandbox.calls), and the zygote relays them with how the child ended,
timing each input against its limit by when its record arrives. What a child inherits holds no
expected output and no other candidate's program: the jobs queued behind it are wiped from its
copy of the input buffer (the Python loop reads no further ahead than one job), and a worker
that was sent checking code (the in-process mode) runs no call job.
"""

from __future__ import annotations

import gc
import importlib
import json
import marshal
import math
import os
import resource
import select
import signal
import sys
import time
from types import CodeType
from typing import Any, BinaryIO

from codeserve.sandbox import calls, privileges
from codeserve.sandbox.candidate_exec import (
    CappedWriter,
    PlusCase,
    call_record,
    conclude,
    execute,
    run_calls,
)
from codeserve.sandbox.frames import (
    HEADER,
    KINDS,
    PASSED_REPORT,
    encode_frame,
    read_request,
    write_all,
)

try:
    from codeserve.sandbox import _zygote_loop
except ImportError:  # not built (no C compiler at install): the Python loop below does its work
    _zygote_loop = None

# Run in the zygote before freezing its heap: the first compile() builds the AST types and the
# first exception the traceback machinery; done here, no candidate pays for them (~1 ms each).
_WARM_UP = (
    "def f(xs):\n    return sorted(set(xs))[::-1]\n"
    "assert f([3, 1, 3]) == [3, 1]\nassert f([]) == [1], 'warm-up'\n"
)


class Zygote:
    """The per-worker job loop (runs as PID 1 of the worker's PID namespace when available)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.cfg = config
        self.layers: list[dict[str, Any]] = config["layers"]
        self.cgroup_dirs: dict[str, str] = config["cgroups"]
        self.pid1 = os.getpid() == 1
        self.own_scratch = config["own_scratch"]
        self.scratch = config["scratch"]
        self.bundles: dict[str, PlusCase] = {}
        # Compiled checking code and call jobs' inline cases of the last few tasks, keyed by
        # their text (see `_cached`).
        self.tests: dict[bytes, CodeType | None] = {}
        self.cases: dict[bytes, calls.CallCase] = {}
        # One candidate at a time, so one fixed working directory (recreated per candidate).
        self.workdir = os.path.join(self.scratch, "work")
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.vm_bytes: int | None = None
        self.uid: int | None = config["uid"]
        self.native = bool(config.get("native", True)) and _zygote_loop is not None and self.pid1

    def _cgroup_procs(self) -> list[int]:
        path = self.cgroup_dirs.get("pids")
        try:
            with open(f"{path}/cgroup.procs") as f:
                return [int(p) for p in f.read().split()] if path else []
        except OSError:
            return []

    # -- lifecycle --------------------------------------------------------------------------
    def prepare(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.pid1:
            # Our parent is the single-threaded worker process. (Without a PID namespace we are
            # that process, whose parent is a harness thread that may exit at any time: there we
            # rely on EOF on stdin instead.)
            privileges.die_with_parent()
        try:
            privileges.prctl(privileges.PR_SET_DUMPABLE, 0)  # candidates may not ptrace us
        except OSError:
            pass
        if not self.pid1:
            # Orphaned daemons re-parent to us, so we can still find and kill them.
            try:
                privileges.prctl(privileges.PR_SET_CHILD_SUBREAPER, 1)
            except OSError:
                pass
        try:  # if anything must die on OOM, it is a candidate: they inherit this
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        refused = privileges.forbid_new_privileges()
        self.layers.append(
            {
                "name": "no new privileges",
                "active": refused is None,
                "detail": refused or "empty capability bounding set, no_new_privs",
            }
        )
        if not self.native:  # the C loop drops them itself
            self.drop_privileges = privileges.PrivilegeDropper(self.uid)
        for name in self.cfg["preimport"]:
            try:
                importlib.import_module(name)
            except Exception:
                pass
        for _ in range(2):  # see _WARM_UP
            execute("exec", _WARM_UP, None, CappedWriter(self.cfg["output_cap"]))
        self.poller = select.poll()
        # If the harness dies (our stdin hangs up), stop at once rather than let the candidate
        # run on to its time limit. Not POLLIN: the harness may send the next job meanwhile.
        self.poller.register(0, 0)
        # Candidates print into this (reset by fork, as it is never written here): made once
        # rather than per candidate, where it cost ~30 page faults.
        self.capture = CappedWriter(self.cfg["output_cap"])
        gc.collect()
        gc.freeze()  # keep the shared heap out of the children's GC: less copy-on-write

    def refusal(self) -> str | None:
        """Why this worker must not run candidates, if so. Without a PID namespace, a candidate
        sharing a uid with host processes could kill(-1) all of them; we fail closed."""
        if self.pid1 or self.cfg["allow_unsafe"]:
            return None
        return (
            "no PID namespace, so candidates could signal every host process of their uid; "
            "enable namespaces, or set CODESERVE_SANDBOX_ALLOW_UNSAFE=1 to run anyway"
        )

    def serve(self, stdin: BinaryIO) -> None:
        refusal = self.refusal()
        write_all(
            1,
            encode_frame(
                {
                    "ready": refusal is None,
                    "refusal": refusal,
                    "pid1": self.pid1,
                    "layers": self.layers,
                    "cgroups": self.cgroup_dirs,
                    "loop": "C" if self.native else "Python",
                }
            ),
        )
        if refusal:
            return
        if self.native:
            cfg = self.cfg
            child = _zygote_loop.serve(
                self,
                self.workdir,
                self.scratch,
                self.devnull,
                -1 if self.uid is None else self.uid,
                cfg["memory_mb"],
                PASSED_REPORT,
                cfg["file_size_mb"] << 20,
                cfg["open_files"],
                cfg["max_procs"],
                self.capture,
            )
            if child is not None:  # in a forked candidate, set up by the C loop
                self._candidate(*child)
        else:
            while (request := read_request(stdin)) is not None:
                op, timeout, memory_mb, cap, job, blob, tests, code, program_code, limits = request
                if op not in KINDS:
                    if not self.control(job, blob):
                        break
                    continue
                kind = KINDS[op]
                if kind == "call":  # "tests" is its case, when sent inline
                    loaded = self._cached(self.cases, bytes(tests), self.load_case, tests)
                    tests = b""
                else:
                    loaded = self._cached(self.tests, bytes(tests), self.load_tests, code)
                try:  # the program is only decoded in the child
                    self._write_reply(
                        *self.run(
                            kind,
                            blob,
                            job,
                            tests,
                            loaded,
                            program_code,
                            timeout,
                            memory_mb,
                            cap,
                            limits,
                        )
                    )
                finally:  # no later candidate's fork inherits this one's program
                    for part in (job, blob, program_code):
                        if isinstance(part, bytearray):
                            part[:] = bytes(len(part))
        if self.own_scratch:
            _rmtree(self.scratch)

    @staticmethod
    def _write_reply(header: dict[str, Any], blob: bytes) -> None:
        if header.get("status") == "passed" and header.keys() == _FAST_KEYS and not blob:
            # The common reply, without the json module's encoder objects.
            body = b'{"status": "passed", "elapsed_s": %r}' % header["elapsed_s"]
            write_all(1, HEADER.pack(len(body), 0) + body)
        else:
            write_all(1, encode_frame(header, blob))

    # -- called by both loops (by the C loop through these names) ---------------------------
    def control(self, job: dict[str, Any] | bytes, blob: bytes) -> bool:
        """A frame for the zygote itself; False means stop."""
        spec: dict[str, Any] = json.loads(job) if isinstance(job, bytes) else job
        kind = spec.get("kind")
        if kind == "shutdown":
            return False
        if kind == "bundle":
            header = self.load_bundle(spec["key"], blob)
        else:
            header = {"status": "error", "detail": f"unknown control frame {kind!r}"}
        write_all(1, encode_frame(header))
        return True

    def load_tests(self, code: bytes) -> CodeType | None:
        """A task's checking code (trusted: it comes from the benchmark), compiled by the
        harness (marshal); None when it must be compiled with the program. Loaded once for all
        the task's candidates rather than compiled in each of them. The C loop keeps the last
        MAX_COMPILED_TESTS, like `_cached`; each stays in every later fork's heap."""
        loaded = marshal.loads(code) if code else None
        gc.freeze()  # as in prepare(): its objects stay out of the children's collections
        return loaded

    def wipe(self) -> None:
        """Empty the scratch directory (a candidate left files there)."""
        _empty(self.scratch)

    # -- one job ----------------------------------------------------------------------------
    def load_bundle(self, key: str, blob: bytes) -> dict[str, Any]:
        """Keep one task's Plus test data (a `PlusCase` pickled by our own harness) in memory, so
        every forked candidate shares it copy-on-write. Insertion-ordered eviction, mirrored by
        the harness to know what we hold."""
        _make_room(self.bundles, self.cfg["max_bundles"])
        import pickle  # not before a Plus benchmark needs it: a smaller heap for the others

        try:
            self.bundles[key] = pickle.loads(blob)
        except Exception as exc:
            return {"status": "error", "detail": f"bundle {key} unreadable: {exc!r}"}
        self.vm_bytes = None
        gc.freeze()
        return {"status": "passed", "detail": f"bundle {key} loaded"}

    def load_case(self, data: bytes) -> calls.CallCase:
        """A call job's case sent inline (its inputs: calls.case_bytes), loaded once for all
        the task's candidates. The C loop keeps the last MAX_COMPILED_TESTS, like `_cached`."""
        case = calls.case_from_bytes(data)
        gc.freeze()
        return case

    @staticmethod
    def _cached(cache: dict[bytes, Any], text: bytes, load: Any, arg: bytes) -> Any:
        """`load(arg)` for `text`, with a cache of the last few tasks: candidates of one task
        usually arrive together."""
        if not text:
            return None
        if text not in cache:
            _make_room(cache, MAX_COMPILED_TESTS)
            cache[text] = load(arg)
        return cache[text]

    def _case(self, kind: str, job: Any) -> Any:
        """A Plus job's test data, a PlusCase (KeyError: this worker has no such bundle); a
        record job's is in its JSON (entry point and checks: never kept here, so that no later
        candidate's fork inherits them); a call job finds its own (see `_calls`)."""
        if kind == "record":
            return job
        return self.bundles[job["bundle"]] if kind not in ("exec", "call") else None

    def run(
        self,
        kind: str,
        program: bytes | str,
        job: Any,
        tests: bytes | str,
        tests_code: CodeType | None,
        program_code: bytes,
        timeout: float,
        memory_mb: int,
        cap: int,
        limits: tuple[float, ...] = (),
    ) -> tuple[dict[str, Any], bytes]:
        """The Python loop's job: fork, supervise, clean up (the C loop's steps). `job` holds
        what a Plus or call job adds: its bundle and inputs; `limits` a call job's per-input
        time limits."""
        # Hot path: keep the child's Python work small, since on many VMs each page it touches
        # after fork (copy-on-write) costs more than the syscalls themselves.
        try:
            case = self._case(kind, job)
        except KeyError as exc:
            return _no_bundle(exc), b""
        try:
            os.mkdir(self.workdir, 0o700)
        except FileExistsError:  # left over from a job that crashed its cleanup
            _rmtree(self.workdir)
            os.mkdir(self.workdir, 0o700)
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.uid)
        rlimits = self._limits(timeout, memory_mb or self.cfg["memory_mb"])
        rfd, wfd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            self._child(
                kind,
                program,
                job,
                case,
                wfd,
                rlimits,
                tests,
                tests_code,
                program_code,
                bool(limits),
            )
        os.close(wfd)
        status, data, timed_out, late = -1, bytearray(), True, False
        try:
            status, data, timed_out, late = self._supervise(
                pid, rfd, started + timeout, cap, limits
            )
        finally:
            os.close(rfd)
            if timed_out:  # otherwise _drain already did it
                self._kill_everything(pid)
            self._wipe_scratch()
        elapsed = round(time.monotonic() - started, 6)
        if not timed_out and kind == "exec" and data == PASSED_REPORT:
            # Only an in-process job's report is a verdict (and a forgeable one: it is only run
            # with the in-process verdict mode); a call job's records never are.
            return {"status": "passed", "elapsed_s": elapsed}, b""
        # Anything else goes to the harness as it is, to be judged there (codeserve.sandbox.verdicts).
        return {
            "wait_status": status,
            "timed_out": timed_out,
            "input_timeout": late,
            "elapsed_s": elapsed,
        }, bytes(data)

    def _supervise(
        self, pid: int, rfd: int, deadline: float, cap: int, limits: tuple[float, ...] = ()
    ) -> tuple[int, bytearray, bool, bool]:
        """Wait for the child until `deadline`, reading its report. With per-input `limits`
        (a call job), input k must be answered within limits[k] of the record before it (see
        codeserve/sandbox/calls.py): the last return value says a child was killed for that."""
        data = bytearray()
        pipe = rfd
        pidfd = os.pidfd_open(pid)
        poller = self.poller
        poller.register(rfd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        records = parsed = 0  # complete records so far, and the bytes they span
        due = deadline
        try:
            while (remaining := due - time.monotonic()) > 0:
                for fd, _ in poller.poll(max(1, int(remaining * 1000))):
                    if fd == 0:
                        self._kill_everything(pid)
                        os._exit(1)
                    if fd == pidfd:
                        _, status = os.waitpid(pid, 0)
                        return status, self._drain(pipe, data, cap, pid), False, False
                    chunk = os.read(rfd, 1 << 16)
                    if not chunk:
                        poller.unregister(rfd)
                        rfd = -1
                    elif len(data) < cap:
                        data += chunk[: cap - len(data)]
                    if limits:
                        before = records
                        while len(data) - parsed >= 4:
                            end = parsed + 4 + int.from_bytes(data[parsed : parsed + 4], "big")
                            if end > len(data):
                                break
                            parsed, records = end, records + 1
                        if records != before:
                            k = records - 1  # records = "ready" + one per input answered
                            due = (
                                min(deadline, time.monotonic() + limits[k])
                                if k < len(limits)
                                else deadline
                            )
        finally:
            if rfd >= 0:
                poller.unregister(rfd)
            poller.unregister(pidfd)
            os.close(pidfd)
        return -1, data, True, due < deadline

    def _drain(self, rfd: int, data: bytearray, cap: int, pid: int) -> bytearray:
        # The child has exited: kill anything it left behind holding the pipe, then read to EOF.
        self._kill_everything(pid)
        os.set_blocking(rfd, False)
        try:
            while chunk := os.read(rfd, 1 << 16):
                if len(data) < cap:
                    data += chunk[: cap - len(data)]
        except BlockingIOError:
            pass
        return data

    def _kill_everything(self, pid: int) -> None:
        if self.pid1:
            # From PID 1: every process in the namespace but us. Through libc, because the
            # usual outcome (nobody left: ESRCH, then ECHILD) would otherwise raise two
            # exceptions per candidate, and their objects cost page faults like anything else.
            libc = privileges.libc()
            if libc.kill(-1, signal.SIGKILL) == 0:
                while libc.waitpid(-1, None, 0) > 0:
                    pass
            return
        self._kill_descendants(pid)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break

    def _kill_descendants(self, pid: int) -> None:
        # Degraded mode (no PID namespace): the candidate's process group, processes in our
        # cgroup, and orphans that re-parented to us as subreaper.
        for _ in range(50):
            victims = {p for p in self._cgroup_procs() if p not in (os.getpid(), os.getppid())}
            victims |= set(_children_of_self())
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if not victims:
                return
            for victim in victims:
                try:
                    os.kill(victim, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            time.sleep(0.001)

    def _wipe_scratch(self) -> None:
        try:
            os.rmdir(self.workdir)  # the usual case: the candidate left nothing behind
        except OSError:
            pass
        _empty(self.scratch)

    # -- the candidate's process -----------------------------------------------------------------
    def _child(
        self,
        kind: str,
        program: bytes | str,
        job: Any,
        case: Any,
        wfd: int,
        limits: list[tuple[int, int, int]],
        tests: bytes | str,
        tests_code: CodeType | None,
        program_code: bytes,
        timed: bool,
    ) -> None:
        """The Python loop's candidate: set up as the C loop's `setup_child`, then run."""
        program, tests = _text(program), _text(tests)
        if kind == "record":
            case = json.loads(case)
        try:
            if self.pid1:
                # Its own process group, so kill(0, ...) cannot reach the worker outside our
                # namespace. Not setsid: a new session costs a scheduler autogroup per candidate
                # (~50 us to create and destroy), and kill(-1) ends the tree here anyway.
                os.setpgid(0, 0)
            else:
                os.setsid()  # killing the candidate's process group is how its tree dies
                privileges.die_with_parent()
            for fd in (0, 1, 2):
                os.dup2(self.devnull, fd)
            os.chdir(self.workdir)
            for which, soft, hard in limits:
                try:
                    resource.setrlimit(which, (soft, hard))
                except (ValueError, OSError):
                    pass
            self.drop_privileges()
            if kind == "call":
                self._calls(wfd, program, job, program_code, timed, None, tests_code)
            header, blob = execute(
                kind,
                program,
                case,
                self.capture,
                job.get("inputs") if isinstance(job, dict) else None,
                tests,
                tests_code,
                program_code,
            )
        except BaseException as exc:
            if kind == "call":
                self._calls(wfd, program, job, program_code, timed, f"{exc!r}", None)
            header, blob = {"status": "error", "detail": f"sandbox setup failed: {exc!r}"}, b""
        self._report(wfd, header, blob)

    def _candidate(
        self,
        wfd: int,
        op: int,
        extra: bytes | None,
        program: str,
        tests: str,
        tests_code: CodeType | None,
        program_code: bytes,
        failure: str | None,
        ran: tuple[BaseException | None] | None,
        timed: int = 0,
    ) -> None:
        """A candidate forked and set up by the C loop (`failure`: why its setup failed;
        `extra`: a Plus or call job's JSON; `ran`: what its program raised, if the C loop ran
        it; `timed`: a call job's inputs have time limits)."""
        if KINDS.get(op) == "call":  # (one the C loop's run_calls could not take)
            self._calls(wfd, program, extra or b"", program_code, bool(timed), failure, tests_code)
        try:
            if failure:
                header, out = {"status": "error", "detail": failure}, b""
            elif ran is not None:
                header, out = conclude(ran[0], program, tests, self.capture)
            else:
                kind, job = KINDS[op], json.loads(extra) if extra else {}
                try:
                    case = self._case(kind, job)
                except KeyError as exc:
                    header, out = _no_bundle(exc), b""
                else:
                    header, out = execute(
                        kind,
                        program,
                        case,
                        self.capture,
                        job.get("inputs"),
                        tests,
                        tests_code,
                        program_code,
                    )
        except BaseException as exc:
            header, out = {"status": "error", "detail": f"sandbox setup failed: {exc!r}"}, b""
        self._report(wfd, header, out)

    def _calls(
        self,
        wfd: int,
        program: str,
        header: bytes,
        program_code: bytes,
        timed: bool,
        failure: str | None,
        case: Any,
    ) -> None:
        """A call job's candidate in Python (the C loop's run_calls does the same steps): its
        records go to the pipe (codeserve.sandbox.calls); never returns. `case` is its
        CallCase when it came inline, else it is the bundle its header names."""
        try:
            if failure is None:
                try:
                    key, span = calls.read_job_header(header)
                    if not isinstance(case, calls.CallCase):
                        case = self.bundles[key or ""]
                except (ValueError, KeyError) as exc:
                    failure = f"no test inputs: {exc!r}"
            if failure is not None:
                os.write(
                    wfd, calls.raised_record(None, "e", None, f"sandbox setup failed: {failure}")
                )
            else:
                run_calls(
                    program,
                    program_code,
                    case,
                    span if span is not None else range(len(case.inputs)),
                    wfd,
                    self.capture,
                    timed,
                )
        finally:
            _exit(0)

    def call_record(self, what: str, index: int, value: Any, program: bytes) -> bytes:
        """The C loop's run_calls leaves these records to Python (candidate_exec.call_record):
        exceptions, refusals, printed output."""
        return call_record(what, index, value, program)

    def _report(self, wfd: int, header: dict[str, Any], blob: bytes) -> None:
        """Send the verdict to the zygote and exit."""
        try:
            if blob or header != _PASSED:
                payload = json.dumps(header, default=repr).encode()
                if not blob and len(payload) > self.cfg["report_cap"] - HEADER.size:
                    payload = _fit(header, self.cfg["report_cap"] - HEADER.size)
                write_all(wfd, HEADER.pack(len(payload), len(blob)) + payload + blob)
            else:
                os.write(wfd, PASSED_REPORT)  # the common case, pre-encoded: fewer pages touched
        finally:
            _exit(0)

    def _limits(self, timeout: float, memory_mb: int) -> list[tuple[int, int, int]]:
        """(resource, soft, hard) for the next child, computed here so the child only applies."""
        cfg = self.cfg
        if self.vm_bytes is None:  # our address space only changes when a bundle is loaded
            with open("/proc/self/statm") as f:
                self.vm_bytes = int(f.read().split()[0]) * resource.getpagesize()
        vm_bytes = self.vm_bytes
        cpu = math.ceil(timeout) + 1
        return [
            (resource.RLIMIT_AS, vm_bytes + (memory_mb << 20), vm_bytes + (memory_mb << 20)),
            (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU first, SIGKILL a second later
            (resource.RLIMIT_FSIZE, cfg["file_size_mb"] << 20, cfg["file_size_mb"] << 20),
            (resource.RLIMIT_NOFILE, cfg["open_files"], cfg["open_files"]),
            (resource.RLIMIT_CORE, 0, 0),
            (resource.RLIMIT_NPROC, cfg["max_procs"], cfg["max_procs"]),
        ]


MAX_COMPILED_TESTS = 8
_PASSED: dict[str, Any] = {"status": "passed"}
_FAST_KEYS = {"status", "elapsed_s"}


def _text(blob: bytes | bytearray | str) -> str:
    return blob if isinstance(blob, str) else blob.decode("utf-8", "surrogatepass")


# A candidate may rebind os._exit in its own process; the Python loop's child exits through
# this one (the C loop calls _exit(2) itself).
_exit = os._exit


def _no_bundle(exc: KeyError) -> dict[str, Any]:
    return {"status": "error", "detail": f"no test inputs for {exc}"}


def _make_room(cache: dict[Any, Any], limit: int) -> None:
    """Evict the oldest entries of an insertion-ordered cache until one more fits."""
    while len(cache) >= limit:
        cache.pop(next(iter(cache)))


def _fit(header: dict[str, Any], room: int) -> bytes:
    """The report in at most `room` bytes (the zygote reads no more, and a cut report would lose
    the verdict): the captured output is cut first (non-ASCII text escapes to 12 bytes a
    character), then every text field (an exception's class name can be any length)."""
    payload = json.dumps(header, default=repr).encode()
    while len(payload) > room and len(header.get("output") or "") > 200:
        text = header["output"]
        header["output"] = text[: len(text) // 2] + "\n[... cut to fit the report]"
        payload = json.dumps(header, default=repr).encode()
    if len(payload) > room:
        header = {k: v[:200] if isinstance(v, str) else v for k, v in header.items()}
        payload = json.dumps(header, default=lambda v: repr(v)[:200]).encode()
    return payload


def _empty(path: str) -> None:
    """Remove everything inside a directory (as shutil.rmtree would, without importing shutil
    and its compression modules into the zygote)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _rmtree(path: str) -> None:
    _empty(path)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _children_of_self() -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return kids


class _ExactReader:
    """Reads exactly what is asked from a descriptor, nothing ahead (a buffered reader would
    hold the next jobs, other candidates' programs, in memory that this job's fork inherits),
    into a bytearray that the loop zeroes once its job is done."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, n: int) -> bytearray:
        data = bytearray(n)
        view, got = memoryview(data), 0
        while got < n and (count := os.readv(self.fd, [view[got:]])):
            got += count
        view.release()
        del data[got:]
        return data


def main() -> None:
    """Entry point after the worker's exec: the config is JSON in argv[1]."""
    cfg = json.loads(sys.argv[1])
    os.close(cfg.pop("root_fd"))  # our sources are imported; candidates need no way back
    # Set by the forkserver so that the dynamic linker resolved every symbol here, once, rather
    # than in each candidate (each lazy binding wrote to a copy-on-write page); candidates'
    # own programs need not inherit it.
    os.environ.pop("LD_BIND_NOW", None)
    del sys.path[0]
    zygote = Zygote(cfg)
    zygote.prepare()
    zygote.serve(_ExactReader(0))  # type: ignore[arg-type]
    sys.exit(0)
