"""The verdict on a candidate, judged by the harness from what its sandbox worker saw: the
report the candidate's process wrote (a frame, see `candidate_exec`) and how that process
ended. Judged here rather than in the worker's zygote, whose every Python step after a fork
costs copy-on-write faults (see codeserve/sandbox/zygote.py).

`judge` serves the in-process verdict mode, where the report *is* the verdict (and a candidate
can forge it); `ending` says how a call job's process ended, which its judge
(codeserve/scoring/judge.py) uses for the first input the process left unanswered."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any, Literal, get_args

from codeserve.sandbox.frames import PASSED_REPORT, parse_report

Status = Literal["passed", "failed", "error", "timeout", "memory", "killed"]
STATUSES = set(get_args(Status))


def judge(
    wait_status: int, report: bytes, timed_out: bool, oom_killed: Callable[[], bool]
) -> tuple[dict[str, Any], bytes]:
    """(verdict, payload). `wait_status` is waitpid's; `oom_killed()` says whether the memory
    cgroup killed a process since it was last asked (only candidates live in that cgroup)."""
    if timed_out:
        return {"status": "timeout", "detail": "wall-clock limit exceeded"}, b""
    if report == PASSED_REPORT:
        return {"status": "passed"}, b""
    parsed = parse_report(report, STATUSES)
    if parsed is not None:
        return parsed
    return _ended(wait_status, oom_killed), b""


def ending(wait_status: int, timed_out: bool, oom_killed: Callable[[], bool]) -> tuple[str, str]:
    """How a call job's process ended, as (status, detail)."""
    if timed_out:
        return "timeout", "wall-clock limit exceeded"
    verdict = _ended(wait_status, oom_killed)
    return verdict["status"], verdict["detail"]


def _ended(wait_status: int, oom_killed: Callable[[], bool]) -> dict[str, Any]:
    if oom_killed():
        return {"status": "memory", "detail": "killed by the memory cgroup limit"}
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU:
            return {"status": "timeout", "detail": "CPU time limit exceeded"}
        return {"status": "killed", "detail": f"killed by {signal.Signals(sig).name}"}
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else wait_status
    return {
        "status": "error",
        "error_type": "SystemExit",
        "detail": f"the program exited (status {code}) before a verdict",
    }
